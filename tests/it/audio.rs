//! Episodes you can listen to, through the API: the real pipeline against
//! the mock language-model server and the mock OpenAI-compatible speech
//! server (real HTTP both), the synthesis stage, the media table and store,
//! signed media URLs with ranges, re-voicing, resuming, and each speech
//! fault ending as a retry or a clear code.

use std::time::Duration;

use podforge::config::{LlmChoice, TtsChoice};
use podforge::media::probe::decode_mp3;
use podforge::media::tags::read_chapters;
use podforge::testing::mock_provider::MockProvider;
use podforge::testing::mock_speech::{MockSpeech, SpeechFault, tone_hz};
use podforge::testing::{TestApp, TestUser, error_code};
use serde_json::{Value, json};

use crate::jobs::wait_for;

async fn app(llm: &MockProvider, speech: &MockSpeech) -> TestApp {
    app_with(llm, speech, |_| {}).await
}

async fn app_with(
    llm: &MockProvider,
    speech: &MockSpeech,
    edit: impl FnOnce(&mut podforge::config::Config),
) -> TestApp {
    let (openai, tts) = (llm.openai_url(), speech.base_url());
    TestApp::with_workers(move |c| {
        c.providers.llm = LlmChoice::OpenAi;
        c.providers.openai_base_url = openai;
        c.providers.llm_context_tokens = 16_000;
        c.providers.backoff_base = Duration::from_millis(20);
        c.providers.max_retries = 2;
        c.providers.read_timeout = Duration::from_millis(1500);
        c.providers.request_timeout = Duration::from_secs(5);
        c.speech.tts = TtsChoice::OpenAi;
        c.speech.openai_base_url = tts;
        c.speech.concurrency = 3;
        c.jobs.max_attempts = 1;
        edit(c);
    })
    .await
}

const EPISODE: &str = "query($id: ID!) { podcast(id: $id) {
  status error { code message }
  hosts { name voice }
  durationSeconds
  audio { url mimeType bytes durationSeconds loudnessLufs truePeakDbtp sha256 }
  chapters { title startSeconds start end estimated }
  script { intro { speaker text startSeconds endSeconds } segments { title turns { speaker text startSeconds endSeconds } } outro { speaker text startSeconds endSeconds } }
} }";

async fn generate(app: &TestApp, user: &TestUser, input: Value) -> Value {
    app.gql(
        "mutation($i: GeneratePodcastInput!) { generatePodcast(input: $i) { id hosts { name voice } } }",
        json!({"i": input}),
        Some(&user.token),
    )
    .await
}

async fn episode(app: &TestApp, user: &TestUser, id: &str) -> Value {
    let v = app.gql(EPISODE, json!({"id": id}), Some(&user.token)).await;
    assert!(v["errors"].is_null(), "{v}");
    v["data"]["podcast"].clone()
}

fn input(minutes: i32) -> Value {
    json!({
        "topic": "How tides work",
        "targetMinutes": minutes,
        "hosts": [{"name": "Ada"}, {"name": "Grace"}],
        "sources": [{"title": "Tides", "text": "Tides are caused by the gravity of the moon and the sun. Spring tides happen at new and full moon. Neap tides happen at the quarters."}],
    })
}

async fn started(app: &TestApp, user: &TestUser, minutes: i32) -> String {
    let v = generate(app, user, input(minutes)).await;
    v["data"]["generatePodcast"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"))
        .to_owned()
}

fn turns(p: &Value) -> Vec<Value> {
    let s = &p["script"];
    let mut out: Vec<Value> = s["intro"].as_array().unwrap().clone();
    for seg in s["segments"].as_array().unwrap() {
        out.extend(seg["turns"].as_array().unwrap().iter().cloned());
    }
    out.extend(s["outro"].as_array().unwrap().iter().cloned());
    out
}

async fn fetch(app: &TestApp, url: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = app.http.get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

/// The whole path: two distinct default voices, every turn read once in its
/// host's voice, a tagged MP3 whose decoded length, loudness and chapters
/// match what the API reports, measured turn times in order.
#[tokio::test]
async fn a_generation_ends_with_a_mixed_tagged_mp3_that_the_api_describes() {
    let (llm, speech) = (MockProvider::start().await.unwrap(), MockSpeech::start().await.unwrap());
    let (app, user) = app(&llm, &speech).await.with_user().await;
    let created = generate(&app, &user, input(2)).await;
    let hosts = &created["data"]["generatePodcast"]["hosts"];
    let (v1, v2) = (hosts[0]["voice"].as_str().unwrap(), hosts[1]["voice"].as_str().unwrap());
    assert_ne!(v1, v2, "hosts get distinct default voices: {hosts}");
    let id = created["data"]["generatePodcast"]["id"].as_str().unwrap().to_owned();
    let done = wait_for(&app, &user, &id, &["COMPLETED", "FAILED"]).await;
    assert_eq!(done["status"], "COMPLETED", "{done}");
    let p = episode(&app, &user, &id).await;

    // Every turn was read once, by its host's voice, with citation markers gone.
    let all = turns(&p);
    let calls = speech.calls();
    let distinct: std::collections::HashSet<(String, String)> = all
        .iter()
        .map(|t| {
            let voice = if t["speaker"] == "Ada" { v1 } else { v2 };
            (
                voice.to_owned(),
                podforge::providers::speech::speakable(t["text"].as_str().unwrap(), "en"),
            )
        })
        .collect();
    assert_eq!(
        calls.len(),
        distinct.len(),
        "one speech call per distinct line (a repeated line is read once)"
    );
    for t in &all {
        let voice = if t["speaker"] == "Ada" { v1 } else { v2 };
        let said = podforge::providers::speech::speakable(t["text"].as_str().unwrap(), "en");
        assert!(speech.calls_for(voice, &said) >= 1, "{t}");
        assert!(!said.contains('['), "{said}");
    }

    // Measured turn times: in order, within the audio.
    let audio = &p["audio"];
    let duration = audio["durationSeconds"].as_f64().unwrap();
    assert_eq!(p["durationSeconds"], audio["durationSeconds"]);
    let mut last_end = 0.0;
    for t in &all {
        let (s, e) = (t["startSeconds"].as_f64().unwrap(), t["endSeconds"].as_f64().unwrap());
        assert!(s >= last_end - 1e-6 && e > s && e <= duration, "{t} after {last_end}");
        last_end = e;
    }

    // The file behind the signed URL: decodes to the reported length (2%),
    // -16 LUFS within 1 LU, true peak at most -1 dBTP, chapters as the API says.
    assert_eq!(audio["mimeType"], "audio/mpeg");
    let url = audio["url"].as_str().unwrap();
    let r = fetch(&app, url, &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "audio/mpeg");
    let file = r.bytes().await.unwrap().to_vec();
    assert_eq!(file.len() as u64, audio["bytes"].as_u64().unwrap());
    let decoded = decode_mp3(&file).unwrap();
    let secs = decoded.samples.len() as f64 / f64::from(decoded.channels) / f64::from(decoded.sample_rate);
    assert!(
        (secs - duration).abs() / duration < 0.02,
        "decoded {secs:.2} s, reported {duration:.2} s"
    );
    assert_eq!(decoded.sample_rate, 44_100);
    let loud = podforge::media::loudness::measure(&decoded.samples, decoded.channels, decoded.sample_rate).unwrap();
    assert!((loud.integrated_lufs + 16.0).abs() <= 1.0, "{loud:?}");
    assert!(loud.true_peak_dbtp <= -1.0 + 0.05, "{loud:?}");
    assert!((audio["loudnessLufs"].as_f64().unwrap() - loud.integrated_lufs).abs() < 0.5);
    let chapters = read_chapters(&file).unwrap();
    let api: Vec<&Value> = p["chapters"].as_array().unwrap().iter().collect();
    assert_eq!(chapters.len(), api.len(), "{chapters:?} vs {api:?}");
    assert!(chapters.len() >= 2, "a chapter per non-empty part: {chapters:?}");
    for (c, a) in chapters.iter().zip(&api) {
        assert_eq!(a["estimated"], false);
        assert_eq!(c.title, a["title"].as_str().unwrap());
        assert!((f64::from(c.start_ms) / 1000.0 - a["start"].as_f64().unwrap()).abs() < 0.002);
    }
    assert_eq!(chapters[0].start_ms, 0);
    // Each segment's chapter starts where its first turn starts.
    let first_of_segment = p["script"]["segments"][0]["turns"][0]["startSeconds"].as_f64().unwrap();
    assert!((api[1]["start"].as_f64().unwrap() - first_of_segment).abs() < 0.01);

    // The voices differ by pitch in the file itself (the mock speaks a tone per voice).
    let rate = decoded.sample_rate;
    let window = |t: &Value| {
        let s = (t["startSeconds"].as_f64().unwrap() * f64::from(rate)) as usize;
        let e = (t["endSeconds"].as_f64().unwrap() * f64::from(rate)) as usize;
        decoded.samples[s..e.min(decoded.samples.len())].to_vec()
    };
    for t in all.iter().take(4) {
        let voice = if t["speaker"] == "Ada" { v1 } else { v2 };
        let f0 = podforge::media::analysis::median_f0(&window(t), rate).unwrap();
        let want = tone_hz(voice);
        assert!(
            (f0 - want).abs() / want < 0.05,
            "{} heard at {f0:.1} Hz, voice {voice} is {want:.1} Hz",
            t["speaker"]
        );
    }
}

/// Signed URLs: ranges (206, suffix, open-ended), 416, HEAD, ETag and
/// If-None-Match, and 403 for an expired, forged or re-pointed URL.
#[tokio::test]
async fn media_urls_serve_ranges_and_refuse_anything_unsigned() {
    let (llm, speech) = (MockProvider::start().await.unwrap(), MockSpeech::start().await.unwrap());
    let (app, user) = app(&llm, &speech).await.with_user().await;
    let id = started(&app, &user, 1).await;
    assert_eq!(
        wait_for(&app, &user, &id, &["COMPLETED", "FAILED"]).await["status"],
        "COMPLETED"
    );
    let p = episode(&app, &user, &id).await;
    let url = p["audio"]["url"].as_str().unwrap().to_owned();
    let size = p["audio"]["bytes"].as_u64().unwrap();
    let whole = fetch(&app, &url, &[]).await;
    assert_eq!(whole.status(), 200, "{url}");
    let etag = whole.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(whole.headers()["accept-ranges"], "bytes");
    let whole = whole.bytes().await.unwrap();

    let r = fetch(&app, &url, &[("range", "bytes=10-99")]).await;
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], format!("bytes 10-99/{size}"));
    assert_eq!(r.bytes().await.unwrap(), whole.slice(10..100));
    let r = fetch(&app, &url, &[("range", "bytes=-100")]).await;
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap(), whole.slice(whole.len() - 100..));
    let r = fetch(&app, &url, &[("range", &format!("bytes={}-", size - 5))]).await;
    assert_eq!(r.bytes().await.unwrap(), whole.slice(whole.len() - 5..));
    let r = fetch(&app, &url, &[("range", &format!("bytes={size}-"))]).await;
    assert_eq!(r.status(), 416);
    assert_eq!(r.headers()["content-range"], format!("bytes */{size}"));
    // A stale If-Range gets the whole file.
    let r = fetch(&app, &url, &[("range", "bytes=0-9"), ("if-range", "\"stale\"")]).await;
    assert_eq!(r.status(), 200);

    let head = app.http.head(&url).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-length"], size.to_string().as_str());
    assert!(head.bytes().await.unwrap().is_empty());
    let r = fetch(&app, &url, &[("if-none-match", &etag)]).await;
    assert_eq!(r.status(), 304);

    // Forged, expired, unsigned and re-pointed URLs: 403, same body.
    let (path, query) = url.split_once('?').unwrap();
    let forged = format!("{path}?{}", query.replace("sig=", "sig=A"));
    let expired_q = app.app.signer.sign(
        path.split("/media/").nth(1).unwrap(),
        chrono::Utc::now().timestamp() - 1,
    );
    let other = app
        .app
        .signer
        .sign("podcasts/x/episode-y.mp3", chrono::Utc::now().timestamp() + 60);
    let repointed = format!(
        "{}/media/podcasts/{}/episode-0.mp3?{}",
        app.app.public_origin(),
        uuid::Uuid::new_v4(),
        query
    );
    for bad in [
        forged,
        format!("{path}?{expired_q}"),
        path.to_owned(),
        repointed,
        format!("{path}?{other}"),
    ] {
        let r = fetch(&app, &bad, &[]).await;
        assert_eq!(r.status(), 403, "{bad}");
        assert_eq!(r.text().await.unwrap(), "forbidden");
    }

    // Another user sees no podcast, hence no URL.
    let other_user = app.user().await;
    let v = app.gql(EPISODE, json!({"id": id}), Some(&other_user.token)).await;
    assert!(v["data"]["podcast"].is_null(), "{v}");

    // URL lifetimes are bounded.
    let v = app
        .gql(
            "query($id: ID!) { podcast(id: $id) { audio { url(expiresInSeconds: 5) } } }",
            json!({"id": id}),
            Some(&user.token),
        )
        .await;
    assert_eq!(error_code(&v), Some("BAD_USER_INPUT"), "{v}");

    // Deleting the podcast deletes its media: the signed URL now finds nothing.
    let v = app
        .gql(
            "mutation($id: ID!) { deletePodcast(id: $id) }",
            json!({"id": id}),
            Some(&user.token),
        )
        .await;
    assert!(v["errors"].is_null(), "{v}");
    assert_eq!(fetch(&app, &url, &[]).await.status(), 404);
    let mut conn = app.app.pool.get().await.unwrap();
    let rows = podforge::db::media::find(&mut conn, id.parse().unwrap(), "episode")
        .await
        .unwrap();
    assert!(rows.is_none());
}

/// Voices: listed per language, chosen per host, checked before anything
/// is queued.
#[tokio::test]
async fn voices_are_listed_chosen_and_checked_before_queueing() {
    let (llm, speech) = (MockProvider::start().await.unwrap(), MockSpeech::start().await.unwrap());
    let (app, user) = app(&llm, &speech).await.with_user().await;
    let v = app
        .gql(
            "{ voices(language: \"en\") { id name languages gender provider previewUrl } }",
            json!({}),
            None,
        )
        .await;
    let voices = v["data"]["voices"].as_array().unwrap_or_else(|| panic!("{v}"));
    assert!(voices.len() >= 6, "{v}");
    assert!(voices.iter().all(|x| x["provider"] == "openai"));
    assert_eq!(voices[0]["gender"], "FEMALE");
    // The preview plays.
    let preview = voices[0]["previewUrl"].as_str().unwrap();
    let r = fetch(&app, preview, &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "audio/wav");
    assert!(
        podforge::media::Clip::from_wav(&r.bytes().await.unwrap())
            .unwrap()
            .duration_secs()
            > 0.5
    );
    assert_eq!(fetch(&app, preview, &[]).await.status(), 200);
    assert_eq!(speech.calls().len(), 1, "a preview is synthesized once");
    assert_eq!(
        fetch(&app, &preview.replace(voices[0]["id"].as_str().unwrap(), "nobody"), &[])
            .await
            .status(),
        404
    );

    let mut chosen = input(1);
    chosen["hosts"] = json!([{"name": "Ada", "voice": "onyx"}, {"name": "Grace"}]);
    let created = generate(&app, &user, chosen).await;
    let hosts = &created["data"]["generatePodcast"]["hosts"];
    assert_eq!(hosts[0]["voice"], "onyx", "{created}");
    assert!(hosts[1]["voice"].is_string() && hosts[1]["voice"] != "onyx");

    let mut unknown = input(1);
    unknown["hosts"] = json!([{"name": "Ada"}, {"name": "Grace", "voice": "af_nobody"}]);
    let v = generate(&app, &user, unknown).await;
    assert_eq!(error_code(&v), Some("BAD_USER_INPUT"), "{v}");
    assert_eq!(v["errors"][0]["extensions"]["field"], "input.hosts[1].voice", "{v}");
    let mut unspoken = input(1);
    unspoken["language"] = json!("sw");
    let v = generate(&app, &user, unspoken).await;
    assert_eq!(error_code(&v), Some("BAD_USER_INPUT"), "{v}");
    assert_eq!(v["errors"][0]["extensions"]["field"], "input.language", "{v}");
    // Only the first request was queued.
    let v = app
        .gql("{ podcasts { totalCount } }", json!({}), Some(&user.token))
        .await;
    assert_eq!(v["data"]["podcasts"]["totalCount"], 1, "{v}");
}

/// A failure mid-synthesis, then a retry: the retry synthesizes only the
/// turns the first run did not finish (every clip exactly once in all).
/// Then a re-voice of one host calls the provider only for that host's
/// turns and the language model not at all.
#[tokio::test]
async fn retries_and_revoicing_synthesize_only_what_is_missing() {
    let (llm, speech) = (MockProvider::start().await.unwrap(), MockSpeech::start().await.unwrap());
    let (app, user) = app_with(&llm, &speech, |c| {
        c.speech.concurrency = 1;
        c.speech.attempts = 1;
    })
    .await
    .with_user()
    .await;
    // The first run: 2 clips go through, then the provider refuses our
    // credentials (a fatal failure mid-stage).
    speech.fault(SpeechFault::Stall(Duration::ZERO), 2);
    speech.fault(SpeechFault::Unauthorized, 1);
    let id = started(&app, &user, 2).await;
    let failed = wait_for(&app, &user, &id, &["COMPLETED", "FAILED"]).await;
    assert_eq!(failed["status"], "FAILED", "{failed}");
    assert_eq!(failed["error"]["code"], "TTS_UNAUTHORIZED", "{failed}");
    assert!(
        failed["error"]["message"].as_str().unwrap().contains(" of "),
        "{failed}"
    );
    let before = speech.calls().len();
    let seen: Vec<(String, Option<SpeechFault>)> = speech
        .calls()
        .iter()
        .map(|c| (c.input.chars().take(30).collect(), c.fault.clone()))
        .collect();
    assert_eq!(before, 3, "two clips, then the refused one: {seen:?}");

    let v = app
        .gql(
            "mutation($id: ID!) { retryGeneration(id: $id) { id } }",
            json!({"id": id}),
            Some(&user.token),
        )
        .await;
    assert!(v["errors"].is_null(), "{v}");
    assert_eq!(
        wait_for(&app, &user, &id, &["COMPLETED", "FAILED"]).await["status"],
        "COMPLETED"
    );
    let p = episode(&app, &user, &id).await;
    let all = turns(&p);
    let ok_calls = speech
        .calls()
        .iter()
        .filter(|c| !matches!(c.fault, Some(SpeechFault::Unauthorized)))
        .count();
    let voice_of = |speaker: &Value| {
        p["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["name"] == *speaker)
            .unwrap()["voice"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let lines = |who: Option<&str>| -> std::collections::HashSet<(String, String)> {
        all.iter()
            .filter(|t| who.is_none_or(|w| t["speaker"] == w))
            .map(|t| {
                (
                    voice_of(&t["speaker"]),
                    podforge::providers::speech::speakable(t["text"].as_str().unwrap(), "en"),
                )
            })
            .collect()
    };
    assert_eq!(
        ok_calls,
        lines(None).len(),
        "each distinct clip synthesized exactly once across both runs"
    );

    // Re-voice Grace only.
    let llm_calls = llm.calls().len();
    let old_url = p["audio"]["url"].as_str().unwrap().to_owned();
    let grace_turns = lines(Some("Grace")).len();
    let v = app
        .gql(
            "mutation($id: ID!) { regenerateAudio(id: $id, hosts: [{name: \"Grace\", voice: \"shimmer\"}]) { status hosts { name voice } } }",
            json!({"id": id}),
            Some(&user.token),
        )
        .await;
    assert!(v["errors"].is_null(), "{v}");
    assert_eq!(v["data"]["regenerateAudio"]["status"], "QUEUED");
    let mark = speech.calls().len();
    assert_eq!(
        wait_for(&app, &user, &id, &["COMPLETED", "FAILED"]).await["status"],
        "COMPLETED"
    );
    let new_calls = &speech.calls()[mark..];
    assert_eq!(new_calls.len(), grace_turns, "only Grace's turns are read again");
    assert!(new_calls.iter().all(|c| c.voice == "shimmer"));
    assert_eq!(llm.calls().len(), llm_calls, "no language-model call");
    let q = episode(&app, &user, &id).await;
    assert_eq!(q["hosts"][1]["voice"], "shimmer");
    assert_ne!(q["audio"]["sha256"], p["audio"]["sha256"]);
    let new_url = q["audio"]["url"].as_str().unwrap();
    assert_eq!(fetch(&app, new_url, &[]).await.status(), 200);
    assert!(old_url.split('?').next() != new_url.split('?').next());

    // Bad re-voice requests.
    for (hosts, field) in [
        (json!([{"name": "Nobody", "voice": "shimmer"}]), "hosts[0].name"),
        (json!([{"name": "Ada", "voice": "no_such_voice"}]), "hosts[0].voice"),
    ] {
        let v = app
            .gql(
                "mutation($id: ID!, $h: [HostVoiceInput!]!) { regenerateAudio(id: $id, hosts: $h) { id } }",
                json!({"id": id, "h": hosts}),
                Some(&user.token),
            )
            .await;
        assert_eq!(error_code(&v), Some("BAD_USER_INPUT"), "{v}");
        assert_eq!(v["errors"][0]["extensions"]["field"], field, "{v}");
    }
}

/// Each scripted fault ends as a retry that succeeds or a clear failure
/// code; never a COMPLETED episode with broken audio.
#[tokio::test]
async fn speech_faults_end_as_a_retry_or_a_clear_code() {
    let cases: Vec<(SpeechFault, u32, Option<&str>)> = vec![
        (SpeechFault::RateLimited(1), 1, None),
        (SpeechFault::ServerError, 1, None),
        (SpeechFault::Stall(Duration::from_secs(3)), 1, None),
        (SpeechFault::EmptyBody, 100, Some("TTS_FAILED")),
        (SpeechFault::HeaderOnlyWav, 100, Some("TTS_FAILED")),
        (SpeechFault::Silent, 100, Some("TTS_FAILED")),
        (SpeechFault::ServerError, 100, Some("TTS_FAILED")),
        (SpeechFault::Unauthorized, 1, Some("TTS_UNAUTHORIZED")),
    ];
    let llm = MockProvider::start().await.unwrap();
    let llm = &llm;
    for (fault, times, code) in cases {
        let speech = MockSpeech::start().await.unwrap();
        speech.fault(fault.clone(), times);
        let (app, user) = app_with(llm, &speech, |c| {
            c.speech.attempts = 2;
            c.speech.concurrency = 1;
        })
        .await
        .with_user()
        .await;
        let id = started(&app, &user, 1).await;
        let p = wait_for(&app, &user, &id, &["COMPLETED", "FAILED"]).await;
        let q = episode(&app, &user, &id).await;
        match code {
            None => {
                assert_eq!(p["status"], "COMPLETED", "{fault:?}: {p}");
                let r = fetch(&app, q["audio"]["url"].as_str().unwrap(), &[]).await;
                assert!(decode_mp3(&r.bytes().await.unwrap()).is_ok());
            }
            Some(code) => {
                assert_eq!(p["status"], "FAILED", "{fault:?}: {p}");
                assert_eq!(p["error"]["code"], code, "{fault:?}: {p}");
                assert!(
                    p["error"]["message"].as_str().unwrap().contains("turn 1 of"),
                    "{fault:?}: {p}"
                );
                assert!(q["audio"].is_null(), "{fault:?}: no audio is published: {q}");
            }
        }
    }
}

/// The embedded Kokoro engine through the whole pipeline (the mock writes
/// the script, so the words are fixed): two hosts in two voices a listener
/// tells apart (median pitch apart by more than 25 Hz), the MP3 decodes to
/// the reported length within 2%, -16 LUFS within 1 LU, true peak at most
/// -1 dBTP, and its ID3 chapters are the API's. `scripts/test.sh` fetches
/// the speech assets first (`podforge model fetch`).
#[tokio::test]
async fn the_embedded_voices_read_an_episode_that_measures_as_promised() {
    let llm = MockProvider::start().await.unwrap();
    let openai = llm.openai_url();
    let (app, user) = TestApp::with_workers(move |c| {
        c.providers.llm = LlmChoice::OpenAi;
        c.providers.openai_base_url = openai;
        c.providers.llm_context_tokens = 16_000;
        c.speech.tts = TtsChoice::Local;
        c.speech.concurrency = 1;
        c.jobs.max_attempts = 1;
        c.jobs.lease = Duration::from_secs(30);
    })
    .await
    .with_user()
    .await;
    let created = generate(&app, &user, input(1)).await;
    let hosts = &created["data"]["generatePodcast"]["hosts"];
    assert_eq!(hosts[0]["voice"], "af_heart", "{created}");
    assert_eq!(hosts[1]["voice"], "am_michael", "{created}");
    let id = created["data"]["generatePodcast"]["id"].as_str().unwrap().to_owned();
    let deadline = std::time::Instant::now() + Duration::from_secs(600);
    let done = loop {
        let p = episode(&app, &user, &id).await;
        if p["status"] == "COMPLETED" || p["status"] == "FAILED" {
            break p;
        }
        assert!(std::time::Instant::now() < deadline, "{p}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(done["status"], "COMPLETED", "{done}");
    let audio = &done["audio"];
    let file = fetch(&app, audio["url"].as_str().unwrap(), &[])
        .await
        .bytes()
        .await
        .unwrap()
        .to_vec();
    let decoded = decode_mp3(&file).unwrap();
    assert_eq!(decoded.channels, 1);
    let rate = decoded.sample_rate;
    let secs = decoded.samples.len() as f64 / f64::from(rate);
    let reported = audio["durationSeconds"].as_f64().unwrap();
    assert!(
        (secs - reported).abs() / reported < 0.02,
        "decoded {secs:.2} s, reported {reported:.2} s"
    );
    let loud = podforge::media::loudness::measure(&decoded.samples, 1, rate).unwrap();
    assert!((loud.integrated_lufs + 16.0).abs() <= 1.0, "{loud:?}");
    assert!(loud.true_peak_dbtp <= -1.0 + 0.05, "{loud:?}");
    let chapters = read_chapters(&file).unwrap();
    let api = done["chapters"].as_array().unwrap();
    assert_eq!(chapters.len(), api.len());
    for (c, a) in chapters.iter().zip(api) {
        assert_eq!(c.title, a["title"].as_str().unwrap());
        assert!((f64::from(c.start_ms) / 1000.0 - a["start"].as_f64().unwrap()).abs() < 0.002);
    }
    // Pitch is measured at Kokoro's own rate (24 kHz), as in tests/it/speech.rs.
    let low = podforge::media::resample::resample(&decoded.samples, rate, 24_000).unwrap();
    let pitch = |who: &str| {
        let spans: Vec<(f64, f64)> = turns(&done)
            .iter()
            .filter(|t| t["speaker"] == who)
            .filter_map(|t| Some((t["startSeconds"].as_f64()?, t["endSeconds"].as_f64()?)))
            .collect();
        let mut f0s: Vec<f32> = spans
            .iter()
            .filter_map(|(s, e)| {
                let (s, e) = ((s * 24_000.0) as usize, ((e * 24_000.0) as usize).min(low.len()));
                podforge::media::analysis::median_f0(&low[s..e], 24_000)
            })
            .collect();
        assert!(!f0s.is_empty(), "no voiced turn of {who} among {spans:?}");
        f0s.sort_by(f32::total_cmp);
        f0s[f0s.len() / 2]
    };
    let (ada, grace) = (pitch("Ada"), pitch("Grace"));
    eprintln!("median pitch: Ada (af_heart) {ada:.0} Hz, Grace (am_michael) {grace:.0} Hz; {secs:.1} s, {loud:?}");
    assert!(
        ada - grace > 25.0,
        "af_heart sounds higher than am_michael: {ada:.0} vs {grace:.0} Hz"
    );
}
