//! Sends the codes of accounts (provisional and one-time codes) through the
//! notification channel, on a thread of its own: an answer never waits for the
//! gateway, and never takes longer because a code was sent (R-ACT-1: whether a
//! NIR exists is not told by the time of the answer either). A code is never
//! stored in clear, so it is not queued in the database: one the gateway refuses
//! three times is lost, and the person asks for another.

use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use serde_json::json;

use crate::notify::channel::Channel;

/// One message to a person's e-mail address or mobile.
pub struct Message {
    /// The space it concerns.
    pub patient: String,
    /// `provisional-code` or `sign-in-code`.
    pub kind: &'static str,
    /// `email` or `sms`.
    pub channel: &'static str,
    /// The address or number.
    pub to: String,
    pub text: String,
}

/// A job for the courier's thread: a message, or work that ends in one (the
/// provisional code's lookup, made there so that the answer does not wait for it).
pub enum Job {
    Send(Message),
    Run(Box<dyn FnOnce() -> Option<Message> + Send>),
}

#[derive(Clone)]
pub struct Courier {
    jobs: mpsc::SyncSender<Job>,
}

/// Jobs waiting at most: past it a job is dropped (a code not sent, the person
/// asks again), so that a flood of asks from many addresses cannot grow the
/// process. The answers do not change: they never waited for the courier.
const QUEUED_MAX: usize = 1024;

/// Tries per message, and the wait before the first retry (it doubles).
const TRIES: u32 = 3;
const FIRST_RETRY: Duration = Duration::from_millis(500);

impl Courier {
    pub fn start(channel: Arc<dyn Channel>) -> Courier {
        let (jobs, queue) = mpsc::sync_channel::<Job>(QUEUED_MAX);
        std::thread::Builder::new()
            .name("account-courier".into())
            .spawn(move || {
                while let Ok(job) = queue.recv() {
                    let message = match job {
                        Job::Send(message) => Some(message),
                        Job::Run(work) => work(),
                    };
                    if let Some(message) = message {
                        deliver(channel.as_ref(), &message);
                    }
                }
            })
            .expect("the account courier's thread starts");
        Courier { jobs }
    }

    pub fn send(&self, message: Message) {
        self.queue(Job::Send(message));
    }

    pub fn run(&self, work: impl FnOnce() -> Option<Message> + Send + 'static) {
        self.queue(Job::Run(Box::new(work)));
    }

    fn queue(&self, job: Job) {
        if let Err(mpsc::TrySendError::Full(_)) = self.jobs.try_send(job) {
            tracing::warn!("the account courier's queue is full: a code is not sent");
        }
    }
}

fn deliver(channel: &dyn Channel, message: &Message) {
    let payload = json!({
        "notification": uuid::Uuid::now_v7().to_string(),
        "patient": message.patient,
        "kind": message.kind,
        "channel": message.channel,
        "to": message.to,
        "text": message.text,
        "sent": crate::fhir::date::fhir_instant(chrono::Utc::now()),
    })
    .to_string();
    let mut wait = FIRST_RETRY;
    for attempt in 1..=TRIES {
        match channel.deliver(&payload) {
            Ok(()) => return,
            // Neither the code nor the address goes to the log.
            Err(error) if attempt == TRIES => {
                tracing::warn!(kind = message.kind, patient = %message.patient, %error, "an account code could not be sent");
            }
            Err(_) => {
                std::thread::sleep(wait);
                wait *= 2;
            }
        }
    }
}
