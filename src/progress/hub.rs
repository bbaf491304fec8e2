//! In-process fan-out of progress events and library changes.
//!
//! One [`Hub`] per process. Each watched podcast has a topic: a bounded
//! broadcast channel shared by its subscribers, so an event is read from the
//! table (or handed over by a local writer) once per process, not once per
//! subscriber. Topics exist only while someone subscribes.
//!
//! Delivery is at-least-once and possibly out of order at this level (a local
//! publish can race a table read); [`event_stream`] turns that into
//! exactly-once, in-order delivery per subscriber by tracking the last seq it
//! yielded and re-reading the table on a gap, a lag or a quiet period.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::Stream;
use tokio::sync::{broadcast, mpsc};

use super::{EVENTS_CHANNEL, Event, LIBRARY_CHANNEL, LibraryChange, LibraryNotice};
use crate::db::pool::run;
use crate::db::{DbPool, podcasts};
use crate::domain::{PodcastId, UserId};

/// Events buffered per topic before a slow subscriber lags (and re-reads).
const TOPIC_CAPACITY: usize = 64;
/// Library notices buffered per user.
const LIBRARY_CAPACITY: usize = 64;
/// Notifications queued for sending before new ones are dropped.
const NOTIFY_QUEUE: usize = 10_000;
/// A subscriber with no event for this long re-reads the table: the safety net
/// for notifications lost while no LISTEN connection was up.
const QUIET_RECHECK: Duration = Duration::from_secs(30);
/// Rows read per replay query.
const REPLAY_BATCH: i64 = 500;

struct Topic {
    tx: broadcast::Sender<Arc<Event>>,
    /// Highest seq broadcast on this topic (0: none yet).
    last_seq: i32,
}

/// The process's fan-out point.
pub struct Hub {
    pool: DbPool,
    /// This hub's id, sent with its library notifications so that it skips
    /// its own when the LISTEN connection hands them back (it delivered them
    /// locally already).
    origin: String,
    topics: Mutex<HashMap<PodcastId, Topic>>,
    users: Mutex<HashMap<UserId, broadcast::Sender<LibraryNotice>>>,
    notify_tx: mpsc::Sender<(&'static str, String)>,
}

impl Hub {
    /// A hub over `pool`, with its notification sender task started.
    pub fn new(pool: DbPool) -> Arc<Self> {
        let (notify_tx, notify_rx) = mpsc::channel(NOTIFY_QUEUE);
        tokio::spawn(send_notifications(pool.clone(), notify_rx));
        Arc::new(Self {
            pool,
            origin: uuid::Uuid::new_v4().simple().to_string(),
            topics: Mutex::new(HashMap::new()),
            users: Mutex::new(HashMap::new()),
            notify_tx,
        })
    }

    /// Publishes an event this process just committed: to local subscribers at
    /// once, and to other processes through a notification sent in the
    /// background, batched, outside any transaction.
    pub fn publish(&self, event: Event) {
        let _ = self
            .notify_tx
            .try_send((EVENTS_CHANNEL, format!("{}:{}", event.podcast_id, event.seq)));
        self.deliver(Arc::new(event));
    }

    /// Publishes a library change: to local subscribers at once, and to
    /// other processes by a notification `origin:user:podcast:change` that
    /// this hub ignores when it comes back (each change reaches a subscriber
    /// once).
    pub fn publish_library(&self, notice: LibraryNotice) {
        let _ = self.notify_tx.try_send((
            LIBRARY_CHANNEL,
            format!(
                "{}:{}:{}:{}",
                self.origin,
                notice.user,
                notice.podcast,
                notice.change.as_str()
            ),
        ));
        self.deliver_library(notice);
    }

    fn deliver(&self, event: Arc<Event>) {
        let mut topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(topic) = topics.get_mut(&event.podcast_id)
            && event.seq > topic.last_seq
        {
            topic.last_seq = event.seq;
            let _ = topic.tx.send(event);
        }
    }

    fn deliver_library(&self, notice: LibraryNotice) {
        if let Some(tx) = self.users.lock().unwrap_or_else(|e| e.into_inner()).get(&notice.user) {
            let _ = tx.send(notice);
        }
    }

    /// Handles a notification from the LISTEN connection.
    pub fn on_notification(self: &Arc<Self>, channel: &str, payload: &str) {
        match channel {
            EVENTS_CHANNEL => {
                let Some((id, seq)) = payload.split_once(':') else {
                    return;
                };
                let (Ok(id), Ok(seq)) = (id.parse::<PodcastId>(), seq.parse::<i32>()) else {
                    return;
                };
                let from = {
                    let topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
                    match topics.get(&id) {
                        // Nobody here watches it, or it was published locally.
                        None => return,
                        Some(t) if seq <= t.last_seq => return,
                        Some(t) if t.last_seq == 0 => seq - 1,
                        Some(t) => t.last_seq,
                    }
                };
                self.spawn_fetch(id, from);
            }
            LIBRARY_CHANNEL => {
                let mut parts = payload.split(':');
                let (Some(origin), Some(user), Some(podcast), Some(change)) =
                    (parts.next(), parts.next(), parts.next(), parts.next())
                else {
                    return;
                };
                if origin == self.origin {
                    // Published here, and delivered here already.
                    return;
                }
                let (Ok(user), Ok(podcast), Some(change)) =
                    (user.parse(), podcast.parse(), LibraryChange::parse(change))
                else {
                    return;
                };
                self.deliver_library(LibraryNotice { user, podcast, change });
            }
            _ => {}
        }
    }

    /// After the LISTEN connection (re)connects: re-read every watched topic,
    /// since notifications sent meanwhile are lost.
    pub fn refresh_all(self: &Arc<Self>) {
        let watched: Vec<(PodcastId, i32)> = self
            .topics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(id, t)| (*id, t.last_seq))
            .collect();
        for (id, last) in watched {
            self.spawn_fetch(id, last);
        }
    }

    fn spawn_fetch(self: &Arc<Self>, podcast: PodcastId, after_seq: i32) {
        let hub = self.clone();
        tokio::spawn(async move {
            let events = run!(hub.pool, anyhow::Error, async |conn| {
                Ok(super::after(conn, podcast, after_seq, REPLAY_BATCH).await?)
            });
            match events {
                Ok(events) => {
                    for e in events {
                        hub.deliver(Arc::new(e));
                    }
                }
                // Subscribers re-read on their own after a quiet period.
                Err(e) => tracing::warn!(error = %e, podcast.id = %podcast, "reading events for fan-out failed"),
            }
        });
    }

    /// Subscribes to `podcast`'s topic (created on first use).
    pub fn subscribe(self: &Arc<Self>, podcast: PodcastId) -> TopicSubscription {
        let mut topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        let topic = topics.entry(podcast).or_insert_with(|| Topic {
            tx: broadcast::channel(TOPIC_CAPACITY).0,
            last_seq: 0,
        });
        TopicSubscription {
            rx: Some(topic.tx.subscribe()),
            hub: self.clone(),
            podcast,
        }
    }

    /// Subscribes to `user`'s library changes.
    pub fn subscribe_library(self: &Arc<Self>, user: UserId) -> LibrarySubscription {
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        let tx = users
            .entry(user)
            .or_insert_with(|| broadcast::channel(LIBRARY_CAPACITY).0);
        LibrarySubscription {
            rx: Some(tx.subscribe()),
            hub: self.clone(),
            user,
        }
    }

    /// Number of podcasts watched in this process (for tests and metrics).
    pub fn watched_topics(&self) -> usize {
        self.topics.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// A subscriber's handle on a topic; the topic goes when its last handle does.
pub struct TopicSubscription {
    rx: Option<broadcast::Receiver<Arc<Event>>>,
    hub: Arc<Hub>,
    podcast: PodcastId,
}

impl Drop for TopicSubscription {
    fn drop(&mut self) {
        drop(self.rx.take());
        let mut topics = self.hub.topics.lock().unwrap_or_else(|e| e.into_inner());
        if topics.get(&self.podcast).is_some_and(|t| t.tx.receiver_count() == 0) {
            topics.remove(&self.podcast);
        }
    }
}

/// A subscriber's handle on a user's library changes.
pub struct LibrarySubscription {
    rx: Option<broadcast::Receiver<LibraryNotice>>,
    hub: Arc<Hub>,
    user: UserId,
}

impl LibrarySubscription {
    /// The next change; `None` when the hub is gone. Changes missed by a
    /// lagging subscriber are skipped (they are hints to refetch, not a log).
    pub async fn recv(&mut self) -> Option<LibraryNotice> {
        let rx = self.rx.as_mut()?;
        loop {
            match rx.recv().await {
                Ok(n) => return Some(n),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::debug!(skipped = n, "library subscriber lagged");
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

impl Drop for LibrarySubscription {
    fn drop(&mut self) {
        drop(self.rx.take());
        let mut users = self.hub.users.lock().unwrap_or_else(|e| e.into_inner());
        if users.get(&self.user).is_some_and(|tx| tx.receiver_count() == 0) {
            users.remove(&self.user);
        }
    }
}

/// The events of `podcast` after `after_seq`: first those in the table, then
/// live ones, each exactly once and in seq order; ends after a terminal event
/// (or at once when the podcast is already finished and nothing is left).
///
/// The topic subscription is taken before the replay query, so an event
/// committed between the two is either in the replay or delivered live.
pub fn event_stream(
    hub: Arc<Hub>,
    podcast: PodcastId,
    after_seq: i32,
) -> impl Stream<Item = anyhow::Result<Arc<Event>>> {
    async_stream::try_stream! {
        let mut sub = hub.subscribe(podcast);
        let mut last = after_seq.max(0);
        let mut done = false;
        // Replay.
        let mut terminal_status;
        loop {
            let (batch, status) = run!(hub.pool, anyhow::Error, async |conn| {
                // Status first: a terminal status is committed together with
                // its terminal event, so the events read next include it. Read
                // the other way round, a generation ending in between would
                // look finished with its last event unseen. (Behind a
                // transaction pooler both reads share one READ COMMITTED
                // transaction, where each statement still sees the latest
                // commits, so the order holds.)
                let status = podcasts::find(conn, podcast).await?.map(|p| p.status);
                let batch = super::after(conn, podcast, last, REPLAY_BATCH).await?;
                Ok((batch, status))
            })?;
            terminal_status = status.is_none_or(|s| s.is_terminal());
            let full = batch.len() as i64 == REPLAY_BATCH;
            for e in batch {
                last = e.seq;
                done = e.kind.is_terminal();
                yield Arc::new(e);
            }
            if !full {
                break;
            }
        }
        if !done && terminal_status {
            // Finished before we came, and the caller has seen its end.
            done = true;
        }
        // Live.
        while !done {
            let Some(rx) = sub.rx.as_mut() else { break };
            let reread = match tokio::time::timeout(QUIET_RECHECK, rx.recv()).await {
                Ok(Ok(e)) if e.seq <= last => false,
                Ok(Ok(e)) if e.seq == last + 1 => {
                    last = e.seq;
                    done = e.kind.is_terminal();
                    yield e;
                    false
                }
                // A gap, a lag, or a quiet period: the table has the truth.
                Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) | Err(_) => true,
                Ok(Err(broadcast::error::RecvError::Closed)) => break,
            };
            if reread {
                let batch = run!(hub.pool, anyhow::Error, async |conn| {
                    Ok(super::after(conn, podcast, last, REPLAY_BATCH).await?)
                })?;
                for e in batch {
                    if done {
                        break;
                    }
                    last = e.seq;
                    done = e.kind.is_terminal();
                    yield Arc::new(e);
                }
            }
        }
    }
}

/// Sends queued notifications in batches: one `pg_notify` statement per batch
/// of up to 500, outside any transaction.
async fn send_notifications(pool: DbPool, mut rx: mpsc::Receiver<(&'static str, String)>) {
    let mut batch: Vec<(&'static str, String)> = Vec::with_capacity(64);
    while rx.recv_many(&mut batch, 500).await > 0 {
        let channels: Vec<&str> = batch.iter().map(|(c, _)| *c).collect();
        let payloads: Vec<&str> = batch.iter().map(|(_, p)| p.as_str()).collect();
        let sent = run!(pool, anyhow::Error, async |conn| {
            Ok(diesel_async::RunQueryDsl::execute(
                diesel::sql_query("SELECT pg_notify(c, p) FROM unnest($1::text[], $2::text[]) AS n(c, p)")
                    .bind::<diesel::sql_types::Array<diesel::sql_types::Text>, _>(&channels)
                    .bind::<diesel::sql_types::Array<diesel::sql_types::Text>, _>(&payloads),
                conn,
            )
            .await?)
        });
        if let Err(e) = sent {
            // Other processes fall back to their periodic re-read.
            tracing::warn!(error = %e, count = batch.len(), "sending notifications failed");
        }
        batch.clear();
    }
}
