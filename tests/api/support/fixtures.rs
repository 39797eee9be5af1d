//! Builders for the resources the tests store.

use dmp_fhir_server::fhir::validate::nir_key;
use serde_json::{Value, json};

use std::sync::atomic::{AtomicU64, Ordering};

static NEXT: AtomicU64 = AtomicU64::new(1);

/// A fresh, valid INS-NIR (15 characters with its key).
pub fn nir() -> String {
    let n = NEXT.fetch_add(1, Ordering::SeqCst) + u64::from(std::process::id() % 1000) * 1_000_000;
    let body = format!("1800575{:06}", n % 1_000_000);
    format!("{body}{}", nir_key(&body).expect("digits"))
}

pub const INS: &str = "urn:oid:1.2.250.1.213.1.4.8";
pub const LOINC: &str = "http://loinc.org";

pub const IDNAT_PS: &str = "urn:oid:1.2.250.1.71.4.2.1";
/// IdNat_PS of `As::doctor()`, the médecin traitant of every fixture patient.
pub const DOCTOR_IDNAT: &str = "810000000001";

/// A patient whose médecin traitant is `As::doctor()`.
pub fn patient(nir: &str, family: &str, given: &str, birth_date: &str) -> Value {
    json!({
        "resourceType": "Patient",
        "identifier": [{ "use": "official", "system": INS, "value": nir }],
        "name": [{ "use": "official", "family": family, "given": [given] }],
        "gender": "female",
        "birthDate": birth_date,
        "generalPractitioner": [{ "identifier": { "system": IDNAT_PS, "value": DOCTOR_IDNAT } }],
    })
}

/// A document of `patient_id`; `day` (YYYY-MM-DD) becomes the `date` instant.
pub fn document(patient_id: &str, loinc: &str, day: &str) -> Value {
    let date = format!("{day}T10:00:00+01:00");
    json!({
        "resourceType": "DocumentReference",
        "status": "current",
        "type": { "coding": [{ "system": LOINC, "code": loinc }] },
        "category": [{ "coding": [{ "system": "urn:oid:1.2.250.1.213.1.1.4.1", "code": "10" }] }],
        "subject": { "reference": format!("Patient/{patient_id}") },
        "date": date,
        "author": [{ "reference": "Practitioner/pr-810000000001" }],
        "content": [{ "attachment": { "contentType": "application/pdf", "data": "JVBERi0xLjQK" } }],
    })
}

pub fn consent(patient_id: &str, actor: &str) -> Value {
    json!({
        "resourceType": "Consent",
        "status": "active",
        "scope": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy" }] },
        "category": [{ "coding": [{ "system": "http://loinc.org", "code": "59284-0" }] }],
        "patient": { "reference": format!("Patient/{patient_id}") },
        "policyRule": policy_rule("permit"),
        "provision": {
            "type": "permit",
            "actor": [{
                "role": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP" }] },
                "reference": { "reference": actor }
            }]
        }
    })
}

pub fn communication(patient_id: &str, sent: &str) -> Value {
    json!({
        "resourceType": "Communication",
        "status": "completed",
        "subject": { "reference": format!("Patient/{patient_id}") },
        "sender": { "reference": "Practitioner/pr-810000000001", "identifier": { "system": IDNAT_PS, "value": DOCTOR_IDNAT } },
        "recipient": [{ "reference": format!("Patient/{patient_id}") }],
        "sent": sent,
        "payload": [{ "contentString": "Bonjour" }],
    })
}

/// The policy a Consent applies (FHIR invariant ppc-1): opting in to a permit, out
/// with a deny.
pub fn policy_rule(kind: &str) -> Value {
    let code = if kind == "deny" { "OPTOUT" } else { "OPTIN" };
    json!({ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": code }] })
}

fn consent_with(
    patient_id: &str,
    kind: &str,
    actor: Option<(&str, &str)>,
    purpose: Option<&str>,
) -> Value {
    let mut consent = json!({
        "resourceType": "Consent",
        "status": "active",
        "scope": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy" }] },
        "category": [{ "coding": [{ "system": "http://loinc.org", "code": "59284-0" }] }],
        "patient": { "reference": format!("Patient/{patient_id}") },
        "policyRule": policy_rule(kind),
        "provision": { "type": kind }
    });
    if let Some((system, value)) = actor {
        consent["provision"]["actor"] = json!([{
            "role": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP" }] },
            "reference": { "identifier": { "system": system, "value": value } }
        }]);
    }
    if let Some(purpose) = purpose {
        consent["provision"]["purpose"] = json!([{ "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": purpose }]);
    }
    consent
}

/// A permit Consent naming a professional by IdNat_PS (R-ACC-3).
pub fn permit_professional(patient_id: &str, id_nat_ps: &str) -> Value {
    consent_with(patient_id, "permit", Some((IDNAT_PS, id_nat_ps)), None)
}

/// A deny Consent blocking a professional (R-ACC-2).
pub fn block_professional(patient_id: &str, id_nat_ps: &str) -> Value {
    consent_with(patient_id, "deny", Some((IDNAT_PS, id_nat_ps)), None)
}

/// A deny Consent blocking an organisation by FINESS (R-ACC-2).
pub fn block_organization(patient_id: &str, finess: &str) -> Value {
    consent_with(
        patient_id,
        "deny",
        Some(("urn:oid:1.2.250.1.71.4.2.2", finess)),
        None,
    )
}

/// A space-wide emergency setting: `BTG`, `ETREAT` or `MASKED`, permit or deny.
pub fn emergency_setting(patient_id: &str, kind: &str, purpose: &str) -> Value {
    consent_with(patient_id, kind, None, Some(purpose))
}

/// A document carrying a TRE_A07 visibility label.
pub fn labelled_document(patient_id: &str, loinc: &str, day: &str, label: &str) -> Value {
    let mut document = document(patient_id, loinc, day);
    document["securityLabel"] = json!([{ "coding": [{
        "system": "https://mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument/FHIR/TRE-A07-StatutVisibiliteDocument",
        "code": label
    }] }]);
    document
}

/// A message from the professional `from` (IdNat_PS) to the patient.
pub fn message_from(patient_id: &str, from: &str, sent: &str) -> Value {
    let mut message = communication(patient_id, sent);
    message["sender"] = json!({ "identifier": { "system": IDNAT_PS, "value": from } });
    message
}
