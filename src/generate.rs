//! Synthetic spaces for scale measurements (`dmp-fhir-server generate`): patients
//! with valid INS numbers and a médecin traitant, documents of many types (some
//! masked, some awaiting their announcement), a permit Consent for a colleague in one
//! space out of three, and a message per space. Written through the store's own write
//! path (versions, index, compartments, depositors, lifecycle), many spaces per
//! transaction. Ids are deterministic (`gen-{seed}-{n}`), so a measurement can name
//! spaces without reading them back.

use chrono::Utc;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::fhir::date::fhir_instant;
use crate::fhir::definitions::{self, ResourceDef};
use crate::fhir::extract;
use crate::fhir::validate::nir_key;
use crate::store::{self, Conn, Db, dialect};

/// What to generate.
#[derive(Debug, Clone)]
pub struct Options {
    pub patients: u64,
    pub documents_per_patient: u64,
    /// Distinguishes runs: ids are `gen-{seed}-{n}`.
    pub seed: u64,
    /// Writers side by side (PostgreSQL; SQLite has one writer at a time).
    pub jobs: u64,
}

/// What was written.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub patients: u64,
    pub documents: u64,
    pub resources: u64,
}

/// Spaces per transaction.
const SPACES_PER_TRANSACTION: u64 = 200;

const LOINC: &str = "http://loinc.org";
/// Document types, the frequent ones repeated (consultation and biology reports).
const TYPES: &[&str] = &[
    "11488-4", "11488-4", "11488-4", "11502-2", "11502-2", "18748-4", "34112-3", "11490-0",
    "57833-6", "60593-1", "34874-8", "11369-6", "68599-0", "60591-5",
];
const FAMILIES: &[&str] = &[
    "Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand", "Leroy",
    "Moreau", "Simon", "Laurent", "Lefebvre", "Michel", "Garcia", "Fournier",
];
const GIVENS: &[&str] = &[
    "Claire", "Paul", "Léa", "Hugo", "Inès", "Jules", "Chloé", "Louis", "Emma", "Gabriel",
];
const LABELS: &str = "https://mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument/FHIR/TRE-A07-StatutVisibiliteDocument";

/// The id of generated space `n`.
pub fn patient_id(seed: u64, n: u64) -> String {
    format!("gen-{seed}-{n}")
}

/// A small deterministic generator (xorshift64*): the same seed, the same data.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

/// A valid INS-NIR, distinct for every `n` below 95 million.
fn nir(n: u64, random: &mut Random) -> String {
    let sex = 1 + random.next() % 2;
    let year = 30 + random.next() % 70;
    let month = 1 + random.next() % 12;
    let department = 1 + (n / 1_000_000) % 95;
    let body = format!(
        "{sex}{year:02}{month:02}{department:02}{:06}",
        n % 1_000_000
    );
    let key = nir_key(&body).unwrap_or_default();
    format!("{body}{key}")
}

fn general_practitioner(n: u64) -> String {
    format!("8100{:08}", n % 5_000)
}

/// A resource waiting for its batch.
struct Pending {
    res_type: &'static str,
    id: String,
    content: String,
    index: extract::IndexEntries,
    author: store::Author,
}

/// Collects a transaction's resources, written together by [`Writer::flush`].
struct Writer<'a> {
    conn: &'a mut Conn,
    now: String,
    pending: Vec<Pending>,
    resources: u64,
}

impl Writer<'_> {
    fn put(&mut self, def: &'static ResourceDef, id: &str, mut value: Value, by: &str) {
        value["id"] = json!(id);
        value["meta"] = json!({ "versionId": "1", "lastUpdated": self.now });
        self.pending.push(Pending {
            res_type: def.name,
            id: id.to_owned(),
            index: extract::index(def, &value),
            content: value.to_string(),
            author: store::Author {
                actor: "professional".into(),
                subject: by.to_owned(),
                organization: None,
                created_at: self.now.clone(),
            },
        });
    }

    /// Writes the collected resources through the store's bulk write path.
    fn flush(&mut self) -> Result<(), ApiError> {
        let versions: Vec<store::resources::NewVersion<'_>> = self
            .pending
            .iter()
            .map(|pending| store::resources::NewVersion {
                res_type: pending.res_type,
                res_id: &pending.id,
                version_id: 1,
                last_updated: &self.now,
                deleted: false,
                method: "POST",
                content: &pending.content,
                index: &pending.index,
                author: Some(&pending.author),
            })
            .collect();
        store::resources::write_all(self.conn, &versions)?;
        self.resources += versions.len() as u64;
        self.pending.clear();
        Ok(())
    }
}

fn space(writer: &mut Writer<'_>, options: &Options, n: u64) -> Result<u64, ApiError> {
    let def = |name| definitions::resource(name).expect("served");
    let mut random = Random(options.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (n + 1));
    let id = patient_id(options.seed, n);
    let gp = general_practitioner(n);
    let patient = json!({
        "resourceType": "Patient",
        "identifier": [{ "system": crate::fhir::INS_NIR_SYSTEM, "value": nir(n, &mut random) }],
        "name": [{ "family": random.pick(FAMILIES), "given": [random.pick(GIVENS)] }],
        "gender": if random.next().is_multiple_of(2) { "female" } else { "male" },
        "birthDate": format!("{}-{:02}-{:02}", 1930 + random.next() % 90, 1 + random.next() % 12, 1 + random.next() % 28),
        "generalPractitioner": [{ "identifier": { "system": crate::fhir::IDNAT_PS_SYSTEM, "value": gp } }]
    });
    writer.put(def("Patient"), &id, patient, "insurer-feed");
    store::lifecycle::put(
        writer.conn,
        &store::lifecycle::LifecycleRow {
            patient_id: id.clone(),
            state: "active".into(),
            notified_at: writer.now.clone(),
            changed_at: writer.now.clone(),
            closed_at: None,
            purged_at: None,
            welcomed_at: Some(writer.now.clone()),
        },
    )?;
    for d in 0..options.documents_per_patient {
        let mut document = json!({
            "resourceType": "DocumentReference",
            "status": "current",
            "type": { "coding": [{ "system": LOINC, "code": random.pick(TYPES) }] },
            "category": [{ "coding": [{ "system": "urn:oid:1.2.250.1.213.1.1.4.1", "code": "10" }] }],
            "subject": { "reference": format!("Patient/{id}") },
            "date": format!("20{:02}-{:02}-{:02}T10:00:00+01:00", 15 + random.next() % 10, 1 + random.next() % 12, 1 + random.next() % 28),
            "author": [{ "identifier": { "system": crate::fhir::IDNAT_PS_SYSTEM, "value": gp } }],
            "content": [{ "attachment": { "contentType": "application/pdf", "data": "JVBERi0xLjQK" } }]
        });
        match random.next() % 100 {
            0..=4 => {
                document["securityLabel"] =
                    json!([{ "coding": [{ "system": LABELS, "code": "MASQUE_PS" }] }])
            }
            5..=6 => {
                document["securityLabel"] =
                    json!([{ "coding": [{ "system": LABELS, "code": "INVISIBLE_PATIENT" }] }])
            }
            _ => {}
        }
        writer.put(
            def("DocumentReference"),
            &format!("{id}-d{d}"),
            document,
            &gp,
        );
    }
    if n.is_multiple_of(3) {
        let consent = json!({
            "resourceType": "Consent",
            "status": "active",
            "scope": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy" }] },
            "category": [{ "coding": [{ "system": "http://loinc.org", "code": "59284-0" }] }],
            "patient": { "reference": format!("Patient/{id}") },
            "policyRule": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN" }] },
            "provision": { "type": "permit", "actor": [{
                "role": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP" }] },
                "reference": { "identifier": { "system": crate::fhir::IDNAT_PS_SYSTEM, "value": general_practitioner(n + 1) } }
            }] }
        });
        writer.put(def("Consent"), &format!("{id}-c"), consent, &gp);
    }
    let message = json!({
        "resourceType": "Communication",
        "status": "completed",
        "subject": { "reference": format!("Patient/{id}") },
        "sender": { "identifier": { "system": crate::fhir::IDNAT_PS_SYSTEM, "value": gp } },
        "recipient": [{ "reference": format!("Patient/{id}") }],
        "sent": writer.now,
        "payload": [{ "contentString": "Vos résultats sont dans votre espace." }]
    });
    writer.put(def("Communication"), &format!("{id}-m"), message, &gp);
    Ok(options.documents_per_patient)
}

/// Generates the spaces, calling `progress` with the number of spaces each committed
/// transaction wrote.
/// With several jobs, each writes its own slice of spaces on its own connection.
pub fn run(db: &Db, options: &Options, progress: impl Fn(u64) + Sync) -> Result<Report, ApiError> {
    let jobs = options.jobs.clamp(1, 8);
    let slice = options.patients.div_ceil(jobs);
    let reports = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..jobs)
            .map(|job| {
                let range =
                    (job * slice).min(options.patients)..((job + 1) * slice).min(options.patients);
                let progress = &progress;
                scope.spawn(move || write_spaces(db, options, range, progress))
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|_| Err(ApiError::internal("generator thread failed")))
            })
            .collect::<Vec<_>>()
    });
    let mut report = Report::default();
    for part in reports {
        let part = part?;
        report.patients += part.patients;
        report.documents += part.documents;
        report.resources += part.resources;
    }
    // A bulk load changes the tables' sizes at once: the planner needs to know.
    db.refresh_statistics(true)?;
    Ok(report)
}

/// Writes spaces `range`, many per transaction.
fn write_spaces(
    db: &Db,
    options: &Options,
    range: std::ops::Range<u64>,
    progress: &(impl Fn(u64) + Sync),
) -> Result<Report, ApiError> {
    let mut report = Report::default();
    let mut next = range.start;
    while next < range.end {
        let end = (next + SPACES_PER_TRANSACTION).min(range.end);
        let (documents, resources) = db.write_blocking(|conn| {
            dialect::write_transaction(conn, |conn| {
                let mut writer = Writer {
                    conn,
                    now: fhir_instant(Utc::now()),
                    pending: Vec::new(),
                    resources: 0,
                };
                let mut documents = 0;
                for n in next..end {
                    documents += space(&mut writer, options, n)?;
                }
                writer.flush()?;
                Ok((documents, writer.resources))
            })
        })?;
        report.patients += end - next;
        report.documents += documents;
        report.resources += resources;
        progress(end - next);
        next = end;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_numbers_are_valid_and_distinct() {
        let mut random = Random(7);
        let numbers: std::collections::HashSet<String> =
            (0..2_000).map(|n| nir(n * 997, &mut random)).collect();
        assert_eq!(numbers.len(), 2_000);
        assert!(
            numbers
                .iter()
                .all(|number| crate::fhir::validate::is_valid_nir(number))
        );
    }
}
