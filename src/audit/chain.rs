//! The hash chain that makes tampering with the trace detectable (R-AUD-3).
//!
//! One chain per patient (events concerning no patient share the chain `''`): link
//! `n` stores `hash_n = SHA-256(hash_{n-1} ‖ "\n" ‖ event JSON)`, with 64 zeros before
//! the first link, and the chain's head keeps the last `(n, hash_n)`. A chain per
//! patient lets servers append to different spaces' traces without contending on one
//! row, and lets a patient's trace be checked on its own. [`verify`] recomputes
//! every link and reports the first broken one of each chain.

use std::collections::HashMap;

use openssl::sha::Sha256;

use crate::error::ApiError;
use crate::store::Conn;
use crate::store::audit::{self as stored, NewAuditEvent};

/// The `prev_hash` of a chain's first link.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The hash of a link.
pub fn link_hash(prev_hash: &str, content: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(prev_hash.as_bytes());
    hasher.update(b"\n");
    hasher.update(content.as_bytes());
    hasher
        .finish()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Where chains stand: each one's last link, `(seq, hash)`, by chain key.
pub type Tips = HashMap<String, (i64, String)>;

/// Appends events to their chains, in order (the indexer makes them searchable).
/// Call it inside a write transaction. Returns where the chains stand once it
/// commits.
pub fn append_all(conn: &mut Conn, events: Vec<NewAuditEvent<'_>>) -> Result<Tips, ApiError> {
    if events.is_empty() {
        return Ok(Tips::new());
    }
    let mut keys: Vec<&str> = events.iter().map(|event| event.chain_key).collect();
    keys.sort_unstable();
    keys.dedup();
    // Appenders to the same chain take turns across instances until this
    // transaction ends.
    let heads = stored::lock_chain_heads(conn, &keys)?;
    let mut tips: Tips = heads
        .into_iter()
        .map(|(key, head)| (key, (head.seq, head.hash)))
        .collect();
    let links = link(events, &mut tips);
    stored::append_links(conn, &links)?;
    Ok(tips)
}

/// Links events, in order, after `tips` (a chain not in it starts at genesis),
/// moving each tip to its chain's new last link.
pub fn link<'a>(events: Vec<NewAuditEvent<'a>>, tips: &mut Tips) -> Vec<stored::Link<'a>> {
    let mut links = Vec::with_capacity(events.len());
    for event in events {
        let (seq, prev_hash) = tips
            .get(event.chain_key)
            .cloned()
            .unwrap_or_else(|| (0, GENESIS.to_owned()));
        let hash = link_hash(&prev_hash, event.content);
        tips.insert(event.chain_key.to_owned(), (seq + 1, hash.clone()));
        links.push(stored::Link {
            event,
            seq: seq + 1,
            prev_hash,
            hash,
        });
    }
    links
}

/// A link that does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenLink {
    /// The patient of the chain ('' for events concerning no patient).
    pub chain: String,
    pub seq: i64,
    /// The AuditEvent id, when the link exists.
    pub event: Option<String>,
    pub reason: String,
}

impl std::fmt::Display for BrokenLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let chain = if self.chain.is_empty() {
            "(no patient)".to_owned()
        } else {
            format!("Patient/{}", self.chain)
        };
        match &self.event {
            Some(event) => write!(
                f,
                "chain {chain}, link {} (AuditEvent/{event}): {}",
                self.seq, self.reason
            ),
            None => write!(f, "chain {chain}, link {}: {}", self.seq, self.reason),
        }
    }
}

/// What [`verify`] found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub chains: usize,
    pub events: u64,
    /// The first broken link of each broken chain, and events outside any chain.
    pub broken: Vec<BrokenLink>,
}

/// Where a chain stands while it is walked.
struct Walk {
    key: String,
    seq: i64,
    hash: String,
    broken: bool,
}

/// Recomputes every chain, in bounded memory.
pub fn verify(conn: &mut Conn) -> Result<Report, ApiError> {
    // Heads and links read apart while servers append would tell of links removed
    // that were only appended in between.
    crate::store::dialect::read_snapshot(conn, verify_snapshot)
}

fn verify_snapshot(conn: &mut Conn) -> Result<Report, ApiError> {
    let heads: std::collections::BTreeMap<String, stored::ChainHead> =
        stored::heads(conn)?.into_iter().collect();
    let mut report = Report::default();
    let mut walked: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    let mut current: Option<Walk> = None;
    let mut after: Option<(String, i64)> = None;
    let finish = |walk: Walk, report: &mut Report| {
        if walk.broken {
            return;
        }
        match heads.get(&walk.key) {
            Some(head) if head.seq == walk.seq && head.hash == walk.hash => {}
            Some(head) => report.broken.push(BrokenLink {
                chain: walk.key.clone(),
                seq: head.seq,
                event: None,
                reason: format!(
                    "the chain's head is link {} but its last stored link is {}: events were removed",
                    head.seq, walk.seq
                ),
            }),
            None => report.broken.push(BrokenLink {
                chain: walk.key.clone(),
                seq: walk.seq,
                event: None,
                reason: "the chain has no head".into(),
            }),
        }
    };
    loop {
        let page = stored::links_after(
            conn,
            after.as_ref().map(|(key, seq)| (key.as_str(), *seq)),
            5_000,
        )?;
        let Some(last) = page.last() else { break };
        after = Some((last.chain_key.clone(), last.chain_seq));
        for link in page {
            report.events += 1;
            if current
                .as_ref()
                .is_none_or(|walk| walk.key != link.chain_key)
            {
                if let Some(walk) = current.take() {
                    finish(walk, &mut report);
                }
                walked.insert(link.chain_key.clone());
                current = Some(Walk {
                    key: link.chain_key.clone(),
                    seq: 0,
                    hash: GENESIS.to_owned(),
                    broken: false,
                });
            }
            let walk = current.as_mut().expect("a chain is being walked");
            if walk.broken {
                continue;
            }
            let problem = if link.chain_seq != walk.seq + 1 {
                Some(format!(
                    "link {} follows link {}: events were removed",
                    link.chain_seq, walk.seq
                ))
            } else if link.prev_hash != walk.hash {
                Some("its previous hash is not the hash of the link before".to_owned())
            } else if link_hash(&link.prev_hash, &link.content) != link.hash {
                Some("its hash does not match its content: the event was changed".to_owned())
            } else {
                None
            };
            match problem {
                Some(reason) => {
                    walk.broken = true;
                    report.broken.push(BrokenLink {
                        chain: link.chain_key.clone(),
                        seq: link.chain_seq,
                        event: Some(link.res_id.clone()),
                        reason,
                    });
                }
                None => {
                    walk.seq = link.chain_seq;
                    walk.hash = link.hash.clone();
                }
            }
        }
    }
    if let Some(walk) = current.take() {
        finish(walk, &mut report);
    }
    report.chains = walked.len();
    for (key, head) in &heads {
        if !walked.contains(key) {
            report.broken.push(BrokenLink {
                chain: key.clone(),
                seq: head.seq,
                event: None,
                reason: "the chain's head names links that are all gone".into(),
            });
        }
    }
    for id in stored::unlinked_events(conn)? {
        report.broken.push(BrokenLink {
            chain: String::new(),
            seq: 0,
            event: Some(id),
            reason: "an AuditEvent outside any chain: it was inserted behind the server".into(),
        });
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_hash_depends_on_the_previous_hash_and_the_content() {
        let first = link_hash(GENESIS, "{\"a\":1}");
        assert_eq!(first.len(), 64);
        assert_ne!(first, link_hash(GENESIS, "{\"a\":2}"));
        assert_ne!(first, link_hash(&first, "{\"a\":1}"));
        assert_eq!(first, link_hash(GENESIS, "{\"a\":1}"));
    }
}
