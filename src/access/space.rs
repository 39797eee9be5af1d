//! Facts about one patient's space that the rules read: the declared médecin traitant
//! and the active Consents (IHE PCF shape), parsed from the stored JSON.

use serde_json::Value;

use chrono::{DateTime, Utc};

use crate::fhir::IDNAT_PS_SYSTEM;
use crate::fhir::extract::values_at;
use crate::lifecycle::{Lifecycle, State};
use crate::store::lifecycle::LifecycleRow;

pub use crate::fhir::FINESS_SYSTEM;

/// Who a Consent provision names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsentActor {
    /// A professional, by IdNat_PS.
    Professional(String),
    /// An organisation, by FINESS or structure id.
    Organization(String),
}

/// Consent purposes of the Mon espace santé emergency settings.
pub const PURPOSE_BTG: &str = "BTG";
pub const PURPOSE_ETREAT: &str = "ETREAT";
pub const PURPOSE_MASKED: &str = "MASKED";

/// One active Consent, reduced to what the rules use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentFacts {
    pub permit: bool,
    pub actors: Vec<ConsentActor>,
    pub purposes: Vec<String>,
}

/// What the rules know of a space.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpaceFacts {
    /// Whether the Patient exists (and is not deleted).
    pub exists: bool,
    /// The space's lifecycle (R-LIFE); `None` for a space that predates it (open).
    pub lifecycle: Option<Lifecycle>,
    /// `Patient.birthDate`, for majority (R-LIFE-5).
    pub birth_date: Option<String>,
    /// IdNat_PS of the declared médecin traitant(s).
    pub general_practitioners: Vec<String>,
    pub consents: Vec<ConsentFacts>,
}

impl SpaceFacts {
    /// Parses the stored Patient, Consents and lifecycle of a space.
    pub fn from_documents(
        patient: Option<&str>,
        consents: &[String],
        lifecycle: Option<&LifecycleRow>,
    ) -> SpaceFacts {
        let Some(patient) = patient.and_then(|text| serde_json::from_str::<Value>(text).ok())
        else {
            return SpaceFacts::default();
        };
        let general_practitioners = values_at(&patient, "generalPractitioner")
            .into_iter()
            .filter_map(|reference| reference.get("identifier"))
            .filter(|identifier| {
                identifier.get("system").and_then(Value::as_str) == Some(IDNAT_PS_SYSTEM)
            })
            .filter_map(|identifier| identifier.get("value").and_then(Value::as_str))
            .map(str::to_owned)
            .collect();
        let consents = consents
            .iter()
            .filter_map(|text| serde_json::from_str::<Value>(text).ok())
            .filter(|consent| consent.get("status").and_then(Value::as_str) == Some("active"))
            .map(|consent| consent_facts(&consent))
            .collect();
        let birth_date = patient
            .get("birthDate")
            .and_then(Value::as_str)
            .map(str::to_owned);
        SpaceFacts {
            exists: true,
            lifecycle: lifecycle.and_then(Lifecycle::from_row),
            birth_date,
            general_practitioners,
            consents,
        }
    }

    /// The space's state at `now` (a space without a lifecycle record is open).
    pub fn state_at(&self, now: DateTime<Utc>) -> State {
        self.lifecycle
            .as_ref()
            .map_or(State::Active, |lifecycle| lifecycle.state_at(now))
    }

    pub fn is_general_practitioner(&self, id_nat_ps: &str) -> bool {
        self.general_practitioners.iter().any(|gp| gp == id_nat_ps)
    }

    /// Consents of the given kind naming the professional (or their organisation) and
    /// carrying exactly the given purpose (`None`: no purpose, a plain decision).
    pub fn names(
        &self,
        permit: bool,
        purpose: Option<&str>,
        id_nat_ps: &str,
        organization: Option<&str>,
    ) -> bool {
        self.consents.iter().any(|consent| {
            consent.permit == permit
                && match purpose {
                    None => consent.purposes.is_empty(),
                    Some(purpose) => consent.purposes.iter().any(|code| code == purpose),
                }
                && consent.actors.iter().any(|actor| match actor {
                    ConsentActor::Professional(id) => id == id_nat_ps,
                    ConsentActor::Organization(id) => Some(id.as_str()) == organization,
                })
        })
    }

    /// A space-wide setting: a Consent with this purpose and no actor.
    pub fn setting(&self, permit: bool, purpose: &str) -> bool {
        self.consents.iter().any(|consent| {
            consent.permit == permit
                && consent.actors.is_empty()
                && consent.purposes.iter().any(|code| code == purpose)
        })
    }
}

fn consent_facts(consent: &Value) -> ConsentFacts {
    let provision = consent.get("provision");
    let permit = provision
        .and_then(|provision| provision.get("type"))
        .and_then(Value::as_str)
        != Some("deny");
    let actors = values_at(consent, "provision.actor.reference.identifier")
        .into_iter()
        .filter_map(|identifier| {
            let system = identifier.get("system").and_then(Value::as_str)?;
            let value = identifier.get("value").and_then(Value::as_str)?.to_owned();
            match system {
                IDNAT_PS_SYSTEM => Some(ConsentActor::Professional(value)),
                FINESS_SYSTEM => Some(ConsentActor::Organization(value)),
                _ => None,
            }
        })
        .collect();
    let purposes = values_at(consent, "provision.purpose")
        .into_iter()
        .filter_map(|purpose| purpose.get("code").and_then(Value::as_str))
        .map(str::to_owned)
        .collect();
    ConsentFacts {
        permit,
        actors,
        purposes,
    }
}
