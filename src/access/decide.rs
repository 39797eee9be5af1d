//! The decide stage. Default deny: an actor, resource type or interaction not listed
//! here is refused.
//!
//! The coarse actor table (SPEC §2, §3 and R-ACC-12) decides which actor kind may
//! attempt which interaction on which type; the rules about one space and one row are
//! the gate's (`gate.rs`, `rules/`).

use super::principal::{ActorKind, Principal};
use crate::fhir::definitions::Interaction::{self, *};
use crate::fhir::definitions::{PROFILE_INTERACTIONS, is_medical_profile};

/// A decision and the rule that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    /// Rule id (SPEC) that decided.
    pub rule: &'static str,
    pub reason: String,
}

impl Verdict {
    pub fn allow(rule: &'static str) -> Verdict {
        Verdict {
            allowed: true,
            rule,
            reason: String::new(),
        }
    }

    pub fn deny(rule: &'static str, reason: impl Into<String>) -> Verdict {
        Verdict {
            allowed: false,
            rule,
            reason: reason.into(),
        }
    }
}

/// Rule id of the actor table (SPEC §2 / §3, R-ACC-12).
pub const ACTOR_TABLE: &str = "R-ACC-12";
/// Rule id confining a patient or representative to their own space.
pub const OWN_SPACE: &str = "R-PAT-1";

const READS: &[Interaction] = &[Read, Vread, SearchType, HistoryInstance, HistoryType];

/// Interactions an actor kind may attempt on a resource type.
fn allowed_interactions(actor: &ActorKind, resource_type: &str) -> &'static [Interaction] {
    match (actor, resource_type) {
        // Identity and state of a space (R-ACC-10); created and updated by the
        // system actor only (SPEC §3).
        (ActorKind::System, "Patient") => &[
            Read,
            Vread,
            SearchType,
            HistoryInstance,
            HistoryType,
            Create,
            Update,
        ],
        (ActorKind::Professional, "Patient") => READS,
        // R-PAT-3: the patient declares the médecin traitant (PATCH of
        // generalPractitioner only).
        // R-LIFE: the holder runs the lifecycle operations ($activate, $oppose,
        // $close, $reopen).
        (ActorKind::Patient | ActorKind::Representative, "Patient") => &[
            Read,
            Vread,
            SearchType,
            HistoryInstance,
            HistoryType,
            Patch,
            Operation,
        ],
        // Documents: professionals and patients read and write; the system deposits
        // (reimbursement history, vaccination certificates) and reads nothing
        // medical (R-ACC-12).
        (
            ActorKind::Professional | ActorKind::Patient | ActorKind::Representative,
            "DocumentReference",
        ) => &[
            Read,
            Vread,
            SearchType,
            HistoryInstance,
            HistoryType,
            Create,
            Update,
            Patch,
            Delete,
        ],
        (ActorKind::System, "DocumentReference") => &[Create, Update, Patch, Delete],
        // MHD SubmissionSets and Folders (R-MHD-5): read like the space's documents,
        // written with them (ITI-65); a Folder may be updated by its author.
        (ActorKind::Professional | ActorKind::Patient | ActorKind::Representative, "List") => &[
            Read,
            Vread,
            SearchType,
            HistoryInstance,
            HistoryType,
            Create,
            Update,
        ],
        (ActorKind::System, "List") => &[Create, Update],
        (ActorKind::Professional | ActorKind::Patient | ActorKind::Representative, "Binary") => {
            &[Read, Vread, Create]
        }
        (ActorKind::System, "Binary") => &[Create],
        // Consents: managed by the patient (R-PAT-3); a professional declares the
        // patient's consent to be authorised (R-ACC-3).
        (ActorKind::Patient | ActorKind::Representative, "Consent") => &[
            Read,
            Vread,
            SearchType,
            HistoryInstance,
            HistoryType,
            Create,
            Update,
            Delete,
        ],
        (ActorKind::Professional, "Consent") => &[Read, Vread, SearchType, Create],
        // Secure messaging (R-MSG): professionals and patients.
        (ActorKind::Professional, "Communication") => {
            &[Read, Vread, SearchType, HistoryInstance, Create]
        }
        // R-MSG-4: the holder saves an attachment as a document ($save-attachment).
        (ActorKind::Patient | ActorKind::Representative, "Communication") => &[
            Read,
            Vread,
            SearchType,
            HistoryInstance,
            Create,
            Delete,
            Operation,
        ],
        // The medical profile (R-UI-1): the holder's own words about their health,
        // kept and deleted by them; professionals read it under the space's rules
        // (R-ACC-1 … 5); the system neither reads nor writes it (R-ACC-12).
        (ActorKind::Patient | ActorKind::Representative, kind) if is_medical_profile(kind) => {
            PROFILE_INTERACTIONS
        }
        (ActorKind::Professional, kind) if is_medical_profile(kind) => READS,
        // The trace (R-PAT-4, R-ACC-11): read only, never written through the API.
        (
            ActorKind::Professional | ActorKind::Patient | ActorKind::Representative,
            "AuditEvent",
        ) => &[Read, SearchType],
        _ => &[],
    }
}

/// Decides whether the principal may attempt `interaction` on `resource_type`, and
/// nothing more. A request is decided by [`decide_request`], on what it performs.
pub fn decide(principal: &Principal, resource_type: &str, interaction: Interaction) -> Verdict {
    let table = decide_by_table(principal, resource_type, interaction);
    if !table.allowed {
        return table;
    }
    // The table allows it; an operation's scopes are those of what it performs.
    if interaction == Operation {
        return Verdict::deny(
            "R-ACC-13",
            format!("an operation on {resource_type} is decided on what it performs"),
        );
    }
    decide_request(
        principal,
        resource_type,
        interaction,
        &[(resource_type, interaction)],
    )
}

/// Decides a request: the actor table for `interaction` on `resource_type`, then the
/// caller's scopes for every interaction the request performs (`performs`, on
/// whichever type; R-ACC-13). A request performs more than its own interaction: a
/// patch reads what it changes, a conditional create searches, a document that
/// replaces another changes it, an operation reads and writes other types and
/// answers with a body. An operation the type does not declare performs nothing:
/// its answer is a 404.
pub fn decide_request(
    principal: &Principal,
    resource_type: &str,
    interaction: Interaction,
    performs: &[(&str, Interaction)],
) -> Verdict {
    let table = decide_by_table(principal, resource_type, interaction);
    if !table.allowed {
        return table;
    }
    performs
        .iter()
        .find_map(|(resource_type, interaction)| {
            super::rules::scopes::r_acc_13_scopes(principal, resource_type, *interaction)
        })
        .unwrap_or(table)
}

/// The actor table alone (SPEC §2, §3, R-ACC-12).
fn decide_by_table(
    principal: &Principal,
    resource_type: &str,
    interaction: Interaction,
) -> Verdict {
    if let ActorKind::Other(kind) = &principal.actor {
        return Verdict::deny(
            ACTOR_TABLE,
            format!("actor {kind:?} has no access to health data"),
        );
    }
    if allowed_interactions(&principal.actor, resource_type).contains(&interaction) {
        Verdict::allow(ACTOR_TABLE)
    } else {
        Verdict::deny(
            ACTOR_TABLE,
            format!(
                "a {} may not {} {resource_type}",
                principal.actor.code(),
                interaction.code()
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::PurposeOfUse;

    fn principal(actor: ActorKind) -> Principal {
        Principal {
            actor,
            subject: "s".into(),
            issuer: "i".into(),
            patient: Some("p1".into()),
            profession: None,
            specialty: None,
            organization: None,
            name: None,
            scopes: None,
            purpose_of_use: PurposeOfUse::Normal,
            access_reason: None,
            client_id: None,
            standing: None,
        }
    }

    #[test]
    fn only_the_system_creates_patients() {
        assert!(decide(&principal(ActorKind::System), "Patient", Create).allowed);
        for actor in [
            ActorKind::Patient,
            ActorKind::Professional,
            ActorKind::Representative,
        ] {
            assert!(!decide(&principal(actor), "Patient", Create).allowed);
        }
    }

    #[test]
    fn other_actors_get_nothing() {
        let insurer = principal(ActorKind::Other("insurer".into()));
        for kind in [
            "Patient",
            "DocumentReference",
            "List",
            "Binary",
            "Consent",
            "Communication",
            "AuditEvent",
        ] {
            assert_eq!(decide(&insurer, kind, Read).rule, "R-ACC-12");
            assert!(!decide(&insurer, kind, Read).allowed);
        }
    }

    #[test]
    fn the_system_reads_nothing_medical() {
        let system = principal(ActorKind::System);
        assert!(!decide(&system, "DocumentReference", Read).allowed);
        assert!(!decide(&system, "DocumentReference", SearchType).allowed);
        assert!(decide(&system, "DocumentReference", Create).allowed);
    }

    #[test]
    fn the_medical_profile_is_written_by_its_holder_and_read_by_professionals() {
        for kind in crate::fhir::definitions::MEDICAL_PROFILE {
            for actor in [ActorKind::Patient, ActorKind::Representative] {
                for interaction in [Read, SearchType, Create, Update, Delete] {
                    assert!(decide(&principal(actor.clone()), kind, interaction).allowed);
                }
                assert!(!decide(&principal(actor.clone()), kind, Patch).allowed);
            }
            let professional = principal(ActorKind::Professional);
            assert!(decide(&professional, kind, Read).allowed);
            assert!(decide(&professional, kind, SearchType).allowed);
            for interaction in [Create, Update, Patch, Delete] {
                assert!(!decide(&professional, kind, interaction).allowed);
            }
            for interaction in [Read, SearchType, Create, Update, Delete] {
                assert!(!decide(&principal(ActorKind::System), kind, interaction).allowed);
            }
        }
    }

    #[test]
    fn nobody_writes_audit_events() {
        for actor in [
            ActorKind::Patient,
            ActorKind::Professional,
            ActorKind::System,
            ActorKind::Representative,
        ] {
            for interaction in [Create, Update, Patch, Delete] {
                assert!(!decide(&principal(actor.clone()), "AuditEvent", interaction).allowed);
            }
        }
    }
}
