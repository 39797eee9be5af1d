//! The habilitation matrix (R-ACC-6): which document types each profession (and,
//! where the matrix says so, specialty) may read. Data, loaded at start from
//! `fhir-profiles/habilitation-matrix.json` (compiled in) or from the file the
//! configuration names; a malformed file stops the start with a clear message.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use serde::Deserialize;

use crate::fhir::{LOINC_SYSTEM, TRE_A05_SYSTEM};

/// The shipped matrix, used when the configuration names none.
const SHIPPED: &str = include_str!("../../fhir-profiles/habilitation-matrix.json");

/// Professions of TRE_G15-ProfessionSante (the codes a rule may name).
const TRE_G15: &[&str] = &[
    "10", "21", "26", "28", "31", "32", "40", "50", "60", "69", "70", "80", "81", "82", "83", "84",
    "85", "86", "91", "92", "94", "95", "96", "98",
];

/// A document type: `(system, code)`.
pub type DocumentType = (String, String);

/// What a rule lets its profession read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypeAccess {
    /// Every document type except `excluded`, among the types of the code systems the
    /// matrix reads (`systems`): a type of another system, or written another way, is
    /// one the matrix cannot decide, and is refused.
    AllExcept {
        excluded: Vec<DocumentType>,
        systems: Vec<String>,
    },
    /// Only these document types.
    Only(Vec<DocumentType>),
}

impl TypeAccess {
    /// Whether a document whose type codings (with both system and code) are `types`
    /// may be read.
    pub fn allows(&self, types: &[DocumentType]) -> bool {
        match self {
            // A document whose type cannot be read is refused: the matrix cannot decide.
            TypeAccess::AllExcept { excluded, systems } => {
                !types.is_empty()
                    && types.iter().all(|(system, _)| systems.contains(system))
                    && !types.iter().any(|kind| excluded.contains(kind))
            }
            TypeAccess::Only(listed) => types.iter().any(|kind| listed.contains(kind)),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct MatrixFile {
    title: String,
    source: String,
    version: String,
    document_types: BTreeMap<String, String>,
    rules: Vec<RuleFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    profession: String,
    specialty: Option<String>,
    #[serde(default)]
    display: String,
    allow: String,
    types: Vec<String>,
}

#[derive(Debug, Clone)]
struct Rule {
    profession: String,
    specialty: Option<String>,
    access: TypeAccess,
}

/// The loaded matrix.
#[derive(Debug, Clone)]
pub struct Matrix {
    pub title: String,
    pub source: String,
    pub version: String,
    rules: Vec<Rule>,
    /// The code systems of the types it declares, as it writes them.
    type_systems: Vec<String>,
}

/// A code system whatever its spelling: LOINC and TRE_A05 by their URL or their
/// OID, a URL with `http` or `https`, with or without a trailing slash, in any case.
fn system_identity(system: &str) -> String {
    let system = match system {
        "urn:oid:2.16.840.1.113883.6.1" => LOINC_SYSTEM,
        "urn:oid:1.2.250.1.213.1.1.4.12" => TRE_A05_SYSTEM,
        other => other,
    };
    let system = system.trim_end_matches('/');
    system
        .strip_prefix("https://")
        .or_else(|| system.strip_prefix("http://"))
        .unwrap_or(system)
        .to_ascii_lowercase()
}

fn split_type(token: &str) -> Option<DocumentType> {
    let (system, code) = token.split_once('|')?;
    (!system.is_empty() && !code.is_empty()).then(|| (system.to_owned(), code.to_owned()))
}

impl Matrix {
    /// Loads the matrix from `path`, or the shipped one.
    pub fn load(path: Option<&Path>) -> Result<Matrix, String> {
        match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|error| {
                    format!(
                        "cannot read the habilitation matrix {}: {error}",
                        path.display()
                    )
                })?;
                Matrix::parse(&text).map_err(|error| {
                    format!("invalid habilitation matrix {}: {error}", path.display())
                })
            }
            None => Matrix::parse(SHIPPED)
                .map_err(|error| format!("invalid shipped habilitation matrix: {error}")),
        }
    }

    /// The code systems of the document types it declares, as it writes them: a
    /// document's type is written in one of them (`fhir::validate::check`), the one
    /// way the matrix reads it (R-ACC-6).
    pub fn type_systems(&self) -> &[String] {
        &self.type_systems
    }

    /// Parses and checks a matrix: known professions, declared document types, one
    /// rule per profession and specialty.
    pub fn parse(text: &str) -> Result<Matrix, String> {
        let file: MatrixFile = serde_json::from_str(text).map_err(|error| error.to_string())?;
        // The code systems of the types the matrix declares, as it writes them.
        let mut systems: Vec<String> = Vec::new();
        for token in file.document_types.keys() {
            let Some((system, _)) = split_type(token) else {
                return Err(format!(
                    "document type {token:?} is not written system|code"
                ));
            };
            if !systems.contains(&system) {
                systems.push(system);
            }
        }
        // A document's type is written in one of these systems, the one way the
        // matrix writes it (`fhir::validate`): a system written two ways would let a
        // type excluded in one spelling be read in the other.
        for (index, system) in systems.iter().enumerate() {
            if let Some(other) = systems[..index]
                .iter()
                .find(|other| system_identity(other) == system_identity(system))
            {
                return Err(format!(
                    "documentTypes write one code system two ways ({other:?} and {system:?}): each is written one way, so that a type has one spelling to decide"
                ));
            }
        }
        // JDV_J07's systems, in which the server writes documents itself (a holder's
        // deposit, a message's attachment saved, TRE_A05): every matrix reads them.
        for required in [LOINC_SYSTEM, TRE_A05_SYSTEM] {
            if !systems.iter().any(|system| system == required) {
                return Err(format!(
                    "documentTypes declare no type of {required}: JDV_J07's systems (LOINC, TRE_A05), in which the server writes documents itself, are read by every matrix"
                ));
            }
        }
        let mut seen = HashSet::new();
        let mut rules = Vec::new();
        for (index, rule) in file.rules.into_iter().enumerate() {
            let at = format!("rules[{index}] ({} {})", rule.profession, rule.display);
            if !TRE_G15.contains(&rule.profession.as_str()) {
                return Err(format!(
                    "{at}: profession {:?} is not a TRE_G15 code",
                    rule.profession
                ));
            }
            if !seen.insert((rule.profession.clone(), rule.specialty.clone())) {
                return Err(format!(
                    "{at}: a second rule for the same profession and specialty"
                ));
            }
            let mut types = Vec::new();
            for token in &rule.types {
                if !file.document_types.contains_key(token) {
                    return Err(format!(
                        "{at}: type {token:?} is not declared in documentTypes"
                    ));
                }
                types.push(split_type(token).expect("checked above"));
            }
            let access = match rule.allow.as_str() {
                "all-except" => TypeAccess::AllExcept {
                    excluded: types,
                    systems: systems.clone(),
                },
                "listed" => TypeAccess::Only(types),
                other => {
                    return Err(format!(
                        "{at}: allow must be \"all-except\" or \"listed\", not {other:?}"
                    ));
                }
            };
            rules.push(Rule {
                profession: rule.profession,
                specialty: rule.specialty,
                access,
            });
        }
        Ok(Matrix {
            title: file.title,
            source: file.source,
            version: file.version,
            rules,
            type_systems: systems,
        })
    }

    /// The access of a profession and specialty: the rule for that specialty if the
    /// matrix has one, else the profession's. `None` (no rule): no document at all
    /// (R-ACC-12).
    pub fn access(&self, profession: &str, specialty: Option<&str>) -> Option<&TypeAccess> {
        let specific = specialty.and_then(|specialty| {
            self.rules.iter().find(|rule| {
                rule.profession == profession && rule.specialty.as_deref() == Some(specialty)
            })
        });
        specific
            .or_else(|| {
                self.rules
                    .iter()
                    .find(|rule| rule.profession == profession && rule.specialty.is_none())
            })
            .map(|rule| &rule.access)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::fhir::{LOINC_SYSTEM as LOINC, TRE_A05_SYSTEM as A05};

    fn kind(system: &str, code: &str) -> Vec<DocumentType> {
        vec![(system.to_owned(), code.to_owned())]
    }

    #[test]
    fn the_shipped_matrix_follows_the_published_summaries() {
        let matrix = Matrix::load(None).unwrap();
        let doctor = matrix.access("10", None).unwrap();
        assert!(doctor.allows(&kind(LOINC, "68599-0")));
        assert!(!doctor.allows(&kind(A05, "ATTEST-RESID")));
        let dentist = matrix.access("40", None).unwrap();
        for code in ["80788-3", "75496-0", "83981-1", "83901-9", "68599-0"] {
            assert!(!dentist.allows(&kind(LOINC, code)), "dentist {code}");
        }
        assert!(!dentist.allows(&kind(A05, "EXPPAT_3")));
        // Another spelling of a system the matrix reads, or another system, is a type
        // it cannot decide: refused where it opens "all but".
        for system in [
            "https://loinc.org",
            "urn:oid:1.2.250.1.213.1.1.4.12",
            "http://example.org",
        ] {
            assert!(!dentist.allows(&kind(system, "80788-3")), "{system}");
            assert!(!doctor.allows(&kind(system, "ATTEST-RESID")), "{system}");
            assert!(!doctor.allows(&kind(system, "11488-4")), "{system}");
        }
        let mixed = vec![
            (LOINC.to_owned(), "11488-4".to_owned()),
            ("https://loinc.org".to_owned(), "80788-3".to_owned()),
        ];
        assert!(!dentist.allows(&mixed));
        assert!(dentist.allows(&kind(LOINC, "11488-4")));
        assert!(
            !matrix
                .access("80", None)
                .unwrap()
                .allows(&kind(LOINC, "15508-5"))
        );
        let pharmacist = matrix.access("21", None).unwrap();
        assert!(pharmacist.allows(&kind(LOINC, "11502-2")));
        assert!(pharmacist.allows(&kind(LOINC, "57833-6")));
        assert!(!pharmacist.allows(&kind(LOINC, "68599-0")));
        assert!(
            matrix.access("26", None).is_none(),
            "a profession without a rule reads nothing"
        );
    }

    #[test]
    fn a_specialty_rule_wins_over_the_profession_rule() {
        let matrix = Matrix::parse(&format!(
            r#"{{"title":"t","source":"s","version":"v","documentTypes":{{"{LOINC}|1-1":"a","{A05}|X":"x"}},"rules":[
            {{"profession":"10","allow":"all-except","types":[]}},
            {{"profession":"10","specialty":"SM03","allow":"listed","types":["{LOINC}|1-1"]}}]}}"#
        ))
        .unwrap();
        assert!(
            matrix
                .access("10", Some("SM03"))
                .unwrap()
                .allows(&kind(LOINC, "1-1"))
        );
        assert!(
            !matrix
                .access("10", Some("SM03"))
                .unwrap()
                .allows(&kind(LOINC, "2-2"))
        );
        assert!(
            matrix
                .access("10", Some("SM54"))
                .unwrap()
                .allows(&kind(LOINC, "2-2"))
        );
    }

    #[test]
    fn malformed_matrices_are_refused_with_the_reason() {
        let with_types = |types: &str, rules: &str| {
            format!(
                r#"{{"title":"t","source":"s","version":"v","documentTypes":{{{types}}},"rules":[{rules}]}}"#
            )
        };
        let jdv_j07 = format!(r#""{LOINC}|1-1":"a","{A05}|X":"x""#);
        let base = |rules: &str| with_types(&jdv_j07, rules);
        let cases = [
            // JDV_J07's systems are read by every matrix: the server writes them.
            (
                with_types(&format!(r#""{LOINC}|1-1":"a""#), ""),
                "declare no type of https://mos.esante.gouv.fr",
            ),
            (with_types("", ""), "declare no type of http://loinc.org"),
            // One spelling per system: else a type excluded one way is read the other.
            (
                with_types(
                    &format!(r#"{jdv_j07},"urn:oid:2.16.840.1.113883.6.1|68599-0":"b""#),
                    "",
                ),
                "two ways",
            ),
            (
                with_types(
                    &format!(r#"{jdv_j07},"https://loinc.org/|68599-0":"b""#),
                    "",
                ),
                "two ways",
            ),
            (
                with_types(
                    &format!(r#"{jdv_j07},"urn:oid:1.2.250.1.213.1.1.4.12|EXPPAT_3":"b""#),
                    "",
                ),
                "two ways",
            ),
            (
                base(r#"{"profession":"99","allow":"listed","types":[]}"#),
                "TRE_G15",
            ),
            (
                base(&format!(
                    r#"{{"profession":"10","allow":"listed","types":["{LOINC}|9-9"]}}"#
                )),
                "not declared",
            ),
            (
                base(r#"{"profession":"10","allow":"some","types":[]}"#),
                "allow must be",
            ),
            (
                base(
                    r#"{"profession":"10","allow":"listed","types":[]},{"profession":"10","allow":"listed","types":[]}"#,
                ),
                "second rule",
            ),
            (
                base(r#"{"profession":"10","allow":"listed","types":[],"extra":1}"#),
                "unknown field",
            ),
            ("{".to_owned(), "EOF"),
        ];
        for (text, expected) in cases {
            let error = Matrix::parse(&text).unwrap_err();
            assert!(error.contains(expected), "{expected:?} not in {error:?}");
        }
    }

    /// A matrix may read a type of another code system (a local one): documents of
    /// that system are then written (`type_systems`) and decided by it.
    #[test]
    fn a_matrix_reads_the_systems_it_declares() {
        let local = "https://types.example.org/local";
        let matrix = Matrix::parse(&format!(
            r#"{{"title":"t","source":"s","version":"v","documentTypes":{{"{LOINC}|1-1":"a","{A05}|X":"x","{local}|L":"l"}},"rules":[
            {{"profession":"40","allow":"all-except","types":["{local}|L"]}}]}}"#
        ))
        .unwrap();
        assert_eq!(matrix.type_systems(), [LOINC, A05, local]);
        let dentist = matrix.access("40", None).unwrap();
        assert!(!dentist.allows(&kind(local, "L")));
        assert!(dentist.allows(&kind(local, "M")));
        assert!(!dentist.allows(&kind("https://types.example.org/other", "M")));
        assert_eq!(Matrix::load(None).unwrap().type_systems(), [LOINC, A05]);
    }
}
