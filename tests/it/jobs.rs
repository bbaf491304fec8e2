//! Durable generations: the queue, the runner's checkpoints, cancel and retry,
//! crashes and concurrency. Stages are scripted (delay, failure, panic).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use podforge::domain::{FailureCode, PodcastId};
use podforge::pipeline::{StageError, StageKind};
use podforge::testing::{StageControl, StageScript, TestApp, TestUser, error_code, scripted_pipeline, test_config};
use serde_json::{Value, json};

pub async fn generate(app: &TestApp, user: &TestUser, topic: &str) -> String {
    let v = app
        .gql(
            "mutation($t: String!) { generatePodcast(input: {topic: $t}) { id status } }",
            json!({"t": topic}),
            Some(&user.token),
        )
        .await;
    assert_eq!(v["data"]["generatePodcast"]["status"], "QUEUED", "{v}");
    v["data"]["generatePodcast"]["id"].as_str().unwrap().to_owned()
}

pub async fn podcast(app: &TestApp, user: &TestUser, id: &str) -> Value {
    let v = app
        .gql(
            "query($id: ID!) { podcast(id: $id) { status stage progress title description tags wordCount estimatedDuration error { code message retryable } } }",
            json!({"id": id}),
            Some(&user.token),
        )
        .await;
    v["data"]["podcast"].clone()
}

/// Polls until the podcast reaches one of `statuses` (a deadline, not a
/// performance assertion: it only keeps a broken run from hanging).
pub async fn wait_for(app: &TestApp, user: &TestUser, id: &str, statuses: &[&str]) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let p = podcast(app, user, id).await;
        if statuses.iter().any(|s| p["status"] == *s) {
            return p;
        }
        assert!(
            Instant::now() < deadline,
            "podcast {id} never reached {statuses:?}: {p}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The stored events: (seq, kind, stage).
pub async fn events(app: &TestApp, id: &str) -> Vec<(i32, String, Option<String>)> {
    let mut conn = app.app.pool.get().await.unwrap();
    let id: PodcastId = id.parse().unwrap();
    podforge::progress::after(&mut conn, id, 0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.seq, e.kind.to_string(), e.stage.map(|s| s.to_string())))
        .collect()
}

fn kinds(events: &[(i32, String, Option<String>)]) -> Vec<String> {
    events
        .iter()
        .map(|(_, k, s)| match s {
            Some(s) => format!("{k}:{s}"),
            None => k.clone(),
        })
        .collect()
}

async fn stage_rows(app: &TestApp, id: &str) -> i64 {
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use podforge::db::schema::podcast_stages;
    let mut conn = app.app.pool.get().await.unwrap();
    let id: PodcastId = id.parse().unwrap();
    podcast_stages::table
        .filter(podcast_stages::podcast_id.eq(id))
        .count()
        .get_result(&mut conn)
        .await
        .unwrap()
}

/// Another "process" over the same database: an app running workers over
/// scripted stages. Stop it by cancelling the token, then awaiting the handle.
async fn worker_process(
    url: &str,
    control: &Arc<StageControl>,
    edit: impl FnOnce(&mut podforge::config::Config),
) -> (tokio::task::JoinHandle<()>, tokio_util::sync::CancellationToken) {
    let mut config = test_config(url);
    edit(&mut config);
    let app = podforge::app::App::build(
        config,
        podforge::app::AppOptions {
            migrate: false,
            pipeline: Some(scripted_pipeline(control.clone())),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    (app.start_background(stop.clone(), true), stop)
}

const FULL_RUN: [&str; 14] = [
    "stage_started:research",
    "artifact:research",
    "stage_completed:research",
    "stage_started:outline",
    "artifact:outline",
    "stage_completed:outline",
    "stage_started:script",
    "artifact:script",
    "stage_completed:script",
    "stage_started:assembly",
    "artifact:assembly",
    "stage_completed:assembly",
    "completed",
    "",
];

#[tokio::test]
async fn a_generation_runs_every_stage_and_publishes_the_episode() {
    let control = Arc::new(StageControl::default());
    let app = TestApp::with_pipeline(scripted_pipeline(control.clone()), |_| {}).await;
    let user = app.user().await;
    let id = generate(&app, &user, "Tides").await;
    let p = wait_for(&app, &user, &id, &["COMPLETED"]).await;
    assert_eq!(p["title"], "Episode: Tides");
    assert_eq!(p["progress"], 1.0);
    assert_eq!(p["wordCount"], 100);
    assert_eq!(p["tags"], json!(["test"]));
    let ev = events(&app, &id).await;
    assert_eq!(kinds(&ev), FULL_RUN[..13].to_vec());
    assert_eq!(ev.iter().map(|e| e.0).collect::<Vec<_>>(), (1..=13).collect::<Vec<_>>());
    assert_eq!(stage_rows(&app, &id).await, 4);
    for &stage in StageKind::ALL.iter().filter(|k| **k != StageKind::Synthesis) {
        assert_eq!(control.runs(stage), 1);
    }
}

#[tokio::test]
async fn without_a_provider_a_generation_fails_with_a_clear_code() {
    let app = TestApp::with_pipeline(podforge::pipeline::Pipeline::unconfigured(), |_| {}).await;
    let user = app.user().await;
    let id = generate(&app, &user, "Tides").await;
    let p = wait_for(&app, &user, &id, &["FAILED"]).await;
    assert_eq!(p["error"]["code"], "PROVIDER_NOT_CONFIGURED");
    assert_eq!(p["error"]["retryable"], false);
    assert_eq!(p["title"], Value::Null, "nothing invented");
    assert_eq!(stage_rows(&app, &id).await, 0);
    assert_eq!(
        kinds(&events(&app, &id).await),
        vec!["stage_started:research", "failed"]
    );
}

#[tokio::test]
async fn a_fatal_failure_keeps_earlier_checkpoints_and_retry_resumes_there() {
    let control = Arc::new(StageControl::default());
    control.script(
        StageKind::Script,
        StageScript {
            failures: vec![StageError::fatal(
                FailureCode::ScriptInvalid,
                "the model wrote nonsense",
            )],
            ..Default::default()
        },
    );
    let app = TestApp::with_pipeline(scripted_pipeline(control.clone()), |_| {}).await;
    let user = app.user().await;
    let id = generate(&app, &user, "Tides").await;
    let p = wait_for(&app, &user, &id, &["FAILED"]).await;
    assert_eq!(p["error"]["code"], "SCRIPT_INVALID");
    assert_eq!(p["stage"], "SCRIPT");
    assert_eq!(stage_rows(&app, &id).await, 2, "research and outline are kept");

    let retry = app
        .gql(
            "mutation($id: ID!) { retryGeneration(id: $id) { status error { code } } }",
            json!({"id": id}),
            Some(&user.token),
        )
        .await;
    assert_eq!(
        retry["data"]["retryGeneration"],
        json!({"status": "QUEUED", "error": null}),
        "{retry}"
    );
    wait_for(&app, &user, &id, &["COMPLETED"]).await;
    assert_eq!(control.runs(StageKind::Research), 1);
    assert_eq!(control.runs(StageKind::Outline), 1);
    assert_eq!(control.runs(StageKind::Script), 2);
    assert_eq!(control.runs(StageKind::Assembly), 1);
    assert_eq!(stage_rows(&app, &id).await, 4);
    let k = kinds(&events(&app, &id).await);
    assert_eq!(k.iter().filter(|k| *k == "stage_started:research").count(), 1);
    assert_eq!(
        k.iter().filter(|k| *k == "stage_started:script").count(),
        2,
        "one per run"
    );
    assert_eq!(k.last().unwrap(), "completed");

    // Retrying a completed generation is a conflict.
    let again = app
        .gql(
            "mutation($id: ID!) { retryGeneration(id: $id) { id } }",
            json!({"id": id}),
            Some(&user.token),
        )
        .await;
    assert_eq!(error_code(&again), Some("CONFLICT"));
}

#[tokio::test]
async fn retryable_failures_and_panics_are_retried_with_retrying_events() {
    let control = Arc::new(StageControl::default());
    control.script(
        StageKind::Outline,
        StageScript {
            failures: vec![StageError::retryable(
                FailureCode::ProviderUnavailable,
                "503 from the model",
            )],
            panics: 0,
            ..Default::default()
        },
    );
    control.script(
        StageKind::Assembly,
        StageScript {
            panics: 1,
            ..Default::default()
        },
    );
    let app = TestApp::with_pipeline(scripted_pipeline(control.clone()), |c| c.jobs.max_attempts = 3).await;
    let user = app.user().await;
    let id = generate(&app, &user, "Tides").await;
    wait_for(&app, &user, &id, &["COMPLETED"]).await;
    assert_eq!(control.runs(StageKind::Outline), 2);
    assert_eq!(control.runs(StageKind::Assembly), 2);
    assert_eq!(control.runs(StageKind::Research), 1, "checkpointed before the failures");
    let k = kinds(&events(&app, &id).await);
    assert_eq!(k.iter().filter(|k| *k == "retrying").count(), 2, "{k:?}");
    assert_eq!(stage_rows(&app, &id).await, 4);
}

#[tokio::test]
async fn exhausted_attempts_end_failed_with_the_last_code() {
    let control = Arc::new(StageControl::default());
    let flaky = StageError::retryable(FailureCode::ProviderUnavailable, "503 from the model");
    control.script(
        StageKind::Research,
        StageScript {
            failures: vec![flaky.clone(), flaky.clone(), flaky],
            ..Default::default()
        },
    );
    let app = TestApp::with_pipeline(scripted_pipeline(control.clone()), |c| c.jobs.max_attempts = 2).await;
    let user = app.user().await;
    let id = generate(&app, &user, "Tides").await;
    let p = wait_for(&app, &user, &id, &["FAILED"]).await;
    assert_eq!(p["error"]["code"], "PROVIDER_UNAVAILABLE");
    assert_eq!(p["error"]["retryable"], true);
    assert_eq!(control.runs(StageKind::Research), 2);
    let k = kinds(&events(&app, &id).await);
    assert_eq!(k.last().unwrap(), "failed");
}

#[tokio::test]
async fn cancel_during_a_stage_stops_it_and_keeps_checkpoints() {
    let control = Arc::new(StageControl::default());
    // Far longer than wait_for's deadline: only a real interruption ends it in time.
    control.script(
        StageKind::Outline,
        StageScript {
            delay: Duration::from_secs(600),
            ..Default::default()
        },
    );
    let app = TestApp::with_pipeline(scripted_pipeline(control.clone()), |_| {}).await;
    let user = app.user().await;
    let id = generate(&app, &user, "Tides").await;
    wait_for(&app, &user, &id, &["OUTLINING"]).await;
    let v = app
        .gql(
            "mutation($id: ID!) { cancelGeneration(id: $id) { id } }",
            json!({"id": id}),
            Some(&user.token),
        )
        .await;
    assert!(v["errors"].is_null(), "{v}");
    wait_for(&app, &user, &id, &["CANCELLED"]).await;
    assert_eq!(stage_rows(&app, &id).await, 1);
    assert_eq!(kinds(&events(&app, &id).await).last().unwrap(), "cancelled");
    assert_eq!(control.runs(StageKind::Script), 0);

    // A cancelled generation can be retried and resumes at the outline.
    control.script(StageKind::Outline, StageScript::default());
    app.gql(
        "mutation($id: ID!) { retryGeneration(id: $id) { id } }",
        json!({"id": id}),
        Some(&user.token),
    )
    .await;
    wait_for(&app, &user, &id, &["COMPLETED"]).await;
    assert_eq!(control.runs(StageKind::Research), 1);
    assert_eq!(control.runs(StageKind::Outline), 2);
}

#[tokio::test]
async fn cancel_before_a_worker_starts_and_on_finished_podcasts() {
    // No workers: the job stays queued.
    let app = TestApp::with_pipeline(scripted_pipeline(Arc::default()), |c| c.jobs.workers = 0).await;
    let user = app.user().await;
    let id = generate(&app, &user, "Tides").await;
    let v = app
        .gql(
            "mutation($id: ID!) { cancelGeneration(id: $id) { status } }",
            json!({"id": id}),
            Some(&user.token),
        )
        .await;
    assert_eq!(v["data"]["cancelGeneration"]["status"], "CANCELLED", "{v}");
    let again = app
        .gql(
            "mutation($id: ID!) { cancelGeneration(id: $id) { status } }",
            json!({"id": id}),
            Some(&user.token),
        )
        .await;
    assert_eq!(again["data"]["cancelGeneration"]["status"], "CANCELLED", "idempotent");
    let other = app.user().await;
    let foreign = app
        .gql(
            "mutation($id: ID!) { cancelGeneration(id: $id) { status } }",
            json!({"id": id}),
            Some(&other.token),
        )
        .await;
    assert_eq!(error_code(&foreign), Some("NOT_FOUND"));
    let foreign = app
        .gql(
            "mutation($id: ID!) { retryGeneration(id: $id) { status } }",
            json!({"id": id}),
            Some(&other.token),
        )
        .await;
    assert_eq!(error_code(&foreign), Some("NOT_FOUND"));
}

#[tokio::test]
async fn the_per_user_cap_answers_rate_limited() {
    let app = TestApp::with_pipeline(scripted_pipeline(Arc::default()), |c| {
        c.jobs.workers = 0;
        c.limits.max_active_generations = 2;
    })
    .await;
    let user = app.user().await;
    let a = generate(&app, &user, "one").await;
    generate(&app, &user, "two").await;
    let third = app
        .gql(
            "mutation { generatePodcast(input: {topic: \"three\"}) { id } }",
            json!({}),
            Some(&user.token),
        )
        .await;
    assert_eq!(error_code(&third), Some("RATE_LIMITED"), "{third}");
    // Other users are not affected; cancelling frees a slot.
    let other = app.user().await;
    generate(&app, &other, "theirs").await;
    app.gql(
        "mutation($id: ID!) { cancelGeneration(id: $id) { id } }",
        json!({"id": a}),
        Some(&user.token),
    )
    .await;
    generate(&app, &user, "three").await;
    // Nothing half-written by the refused request.
    let count = app
        .gql("{ podcasts { totalCount } }", json!({}), Some(&user.token))
        .await;
    assert_eq!(count["data"]["podcasts"]["totalCount"], 3);
}

#[tokio::test]
async fn two_worker_pools_never_run_one_job_at_once() {
    let control = Arc::new(StageControl::default());
    for &stage in StageKind::ALL.iter().filter(|k| **k != StageKind::Synthesis) {
        control.script(
            stage,
            StageScript {
                delay: Duration::from_millis(30),
                ..Default::default()
            },
        );
    }
    let a = TestApp::with_pipeline(scripted_pipeline(control.clone()), |c| {
        c.jobs.workers = 3;
        c.limits.max_active_generations = 20;
    })
    .await;
    // A second "process" over the same database.
    let (b_background, stop_b) = worker_process(&a.db.url, &control, |c| {
        c.jobs.workers = 3;
        c.jobs.lease = Duration::from_secs(2);
    })
    .await;

    let user = a.user().await;
    let mut ids = Vec::new();
    for i in 0..12 {
        ids.push(generate(&a, &user, &format!("topic {i}")).await);
    }
    for id in &ids {
        wait_for(&a, &user, id, &["COMPLETED"]).await;
        assert_eq!(stage_rows(&a, id).await, 4);
    }
    assert_eq!(
        control.max_active_per_podcast.load(Ordering::SeqCst),
        1,
        "a podcast ran twice at once"
    );
    for &stage in StageKind::ALL.iter().filter(|k| **k != StageKind::Synthesis) {
        assert_eq!(control.runs(stage), 12, "each stage ran once per podcast");
    }
    stop_b.cancel();
    b_background.await.unwrap();
}

#[tokio::test]
async fn a_killed_worker_is_reclaimed_and_the_podcast_completes_without_duplicates() {
    let control = Arc::new(StageControl::default());
    control.script(
        StageKind::Outline,
        StageScript {
            delay: Duration::from_secs(3),
            ..Default::default()
        },
    );
    // The API runs no workers; the "process" that dies does.
    let app = TestApp::with_pipeline(scripted_pipeline(control.clone()), |c| c.jobs.workers = 0).await;
    let user = app.user().await;
    let url = app.db.url.clone();
    let doomed_control = control.clone();
    // A process with its own runtime, killed without a clean shutdown.
    let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
    let (kill_tx, kill_rx) = std::sync::mpsc::channel::<()>();
    let doomed = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let _running = worker_process(&url, &doomed_control, |c| c.jobs.lease = Duration::from_secs(1)).await;
            started_tx.send(()).unwrap();
            tokio::task::spawn_blocking(move || kill_rx.recv()).await.unwrap().ok();
        });
        // Like SIGKILL: every task and connection of this runtime just stops.
        rt.shutdown_background();
    });
    started_rx.recv().unwrap();
    let id = generate(&app, &user, "Tides").await;
    wait_for(&app, &user, &id, &["OUTLINING"]).await;
    kill_tx.send(()).unwrap();
    doomed.join().unwrap();
    assert_eq!(
        podcast(&app, &user, &id).await["status"],
        "OUTLINING",
        "stuck until reclaimed"
    );

    // A new worker process comes up and reclaims the job once the lease expires.
    control.script(StageKind::Outline, StageScript::default());
    let (bg, stop) = worker_process(&app.db.url, &control, |c| {
        c.jobs.lease = Duration::from_secs(1);
        c.jobs.poll_interval = Duration::from_millis(200);
    })
    .await;
    wait_for(&app, &user, &id, &["COMPLETED"]).await;
    stop.cancel();
    bg.await.unwrap();

    assert_eq!(control.runs(StageKind::Research), 1);
    assert_eq!(control.runs(StageKind::Outline), 2, "the interrupted stage ran again");
    assert_eq!(stage_rows(&app, &id).await, 4, "one checkpoint per stage");
    let ev = events(&app, &id).await;
    let k = kinds(&ev);
    assert_eq!(k, FULL_RUN[..13].to_vec(), "no event repeated: {k:?}");
}

#[tokio::test]
async fn five_concurrent_generations_complete_while_the_library_answers() {
    let control = Arc::new(StageControl::default());
    for &stage in StageKind::ALL.iter().filter(|k| **k != StageKind::Synthesis) {
        control.script(
            stage,
            StageScript {
                delay: Duration::from_millis(200),
                ..Default::default()
            },
        );
    }
    let app = TestApp::with_pipeline(scripted_pipeline(control), |c| {
        c.jobs.workers = 5;
        c.limits.max_active_generations = 5;
    })
    .await;
    let user = app.user().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(generate(&app, &user, &format!("topic {i}")).await);
    }
    let mut answered = 0;
    let mut slowest = Duration::ZERO;
    loop {
        let started = Instant::now();
        let v = app
            .gql(
                "{ podcasts(first: 20) { totalCount edges { node { id status progress } } } }",
                json!({}),
                Some(&user.token),
            )
            .await;
        slowest = slowest.max(started.elapsed());
        assert_eq!(v["data"]["podcasts"]["totalCount"], 5, "{v}");
        answered += 1;
        let statuses: Vec<&str> = v["data"]["podcasts"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["node"]["status"].as_str().unwrap())
            .collect();
        if statuses.iter().all(|s| *s == "COMPLETED") {
            break;
        }
        assert!(statuses.iter().all(|s| *s != "FAILED"));
    }
    assert!(answered > 5, "the library answered throughout ({answered} queries)");
    eprintln!("library queries during 5 generations: {answered}, slowest {slowest:?}");
}

/// Deadlocks PostgreSQL counted in this test's database (flushed stats).
async fn deadlocks(app: &TestApp) -> i64 {
    let target = podforge::db::DbTarget::parse(&app.db.url, None, Duration::from_secs(5)).unwrap();
    let client = target.connect_raw().await.unwrap();
    client
        .query_one(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0)
}

#[tokio::test]
async fn generate_then_cancel_with_several_workers_never_deadlocks() {
    let control = Arc::new(StageControl::default());
    for &stage in StageKind::ALL.iter().filter(|k| **k != StageKind::Synthesis) {
        control.script(
            stage,
            StageScript {
                delay: Duration::from_millis(2),
                ..Default::default()
            },
        );
    }
    let app = TestApp::with_pipeline(scripted_pipeline(control), |c| {
        c.jobs.workers = 4;
        c.jobs.poll_interval = Duration::from_millis(50);
        c.database.pool_size = 16;
        c.limits.max_active_generations = 1_000;
        // Detect a deadlock after 20 ms instead of 1 s, so the loop meets many.
        c.database.url.push_str("&options=-cdeadlock_timeout%3D20ms");
    })
    .await;
    assert_eq!(deadlocks(&app).await, 0);
    let mut users = Vec::new();
    for _ in 0..4 {
        users.push(app.user().await);
    }
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut clients = Vec::new();
    for (n, user) in users.iter().enumerate() {
        let (app, user) = (&app, user.clone());
        clients.push(async move {
            let mut ids = Vec::new();
            let mut i = 0u64;
            while Instant::now() < deadline {
                let id = generate(app, &user, &format!("loop {n}.{i}")).await;
                // Cancel at varying points: queued, between stages, mid-checkpoint.
                tokio::time::sleep(Duration::from_millis((i * 7 + n as u64 * 3) % 25)).await;
                let v = app
                    .gql(
                        "mutation($id: ID!) { cancelGeneration(id: $id) { status } }",
                        json!({"id": id}),
                        Some(&user.token),
                    )
                    .await;
                // CONFLICT when the generation completed first; never an internal error.
                if let Some(code) = error_code(&v) {
                    assert_eq!(code, "CONFLICT", "{v}");
                }
                ids.push((n, id));
                i += 1;
            }
            ids
        });
    }
    let ids: Vec<(usize, String)> = futures_util::future::join_all(clients)
        .await
        .into_iter()
        .flatten()
        .collect();
    assert!(ids.len() > 40, "the loop ran ({} generations)", ids.len());
    for (n, id) in &ids {
        wait_for(&app, &users[*n], id, &["COMPLETED", "CANCELLED"]).await;
    }
    // No attempt failed (a deadlock victim in a worker burns an attempt).
    {
        use diesel_async::RunQueryDsl;
        #[derive(diesel::QueryableByName)]
        struct Failed {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let mut conn = app.app.pool.get().await.unwrap();
        let failed: Failed = diesel::sql_query("SELECT count(*) AS n FROM jobs WHERE last_error IS NOT NULL")
            .get_result(&mut conn)
            .await
            .unwrap();
        assert_eq!(failed.n, 0, "job attempts failed");
    }
    // Backends flush their statistics when they exit: close the pool, then look.
    app.app.pool.close();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(deadlocks(&app).await, 0, "PostgreSQL detected deadlocks");
}
