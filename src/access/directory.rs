//! The professional directory: who a client certificate's IdNat_PS is (profession,
//! specialty, organisation), as the national directory (RPPS / Annuaire Santé) would
//! say. Loaded at start from a JSON file; a malformed file stops the start.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

/// One professional of the directory.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DirectoryEntry {
    pub id_nat_ps: String,
    /// TRE_G15 code.
    pub profession: String,
    /// TRE_R38 code.
    pub specialty: Option<String>,
    /// FINESS or structure id.
    pub organization: Option<String>,
    pub name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DirectoryFile {
    #[serde(default)]
    source: String,
    professionals: Vec<DirectoryEntry>,
}

/// Professionals by IdNat_PS.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    pub source: String,
    entries: HashMap<String, DirectoryEntry>,
}

impl Directory {
    pub fn load(path: &Path) -> Result<Directory, String> {
        let text = std::fs::read_to_string(path).map_err(|error| {
            format!(
                "cannot read the professional directory {}: {error}",
                path.display()
            )
        })?;
        Directory::parse(&text)
            .map_err(|error| format!("invalid professional directory {}: {error}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Directory, String> {
        let file: DirectoryFile = serde_json::from_str(text).map_err(|error| error.to_string())?;
        let mut entries = HashMap::new();
        for entry in file.professionals {
            if entry.id_nat_ps.is_empty() || entry.profession.is_empty() {
                return Err("every professional needs idNatPs and profession".to_owned());
            }
            if let Some(previous) = entries.insert(entry.id_nat_ps.clone(), entry) {
                return Err(format!("IdNat_PS {} appears twice", previous.id_nat_ps));
            }
        }
        Ok(Directory {
            source: file.source,
            entries,
        })
    }

    pub fn find(&self, id_nat_ps: &str) -> Option<&DirectoryEntry> {
        self.entries.get(id_nat_ps)
    }
}

/// The identity a verified client certificate presents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    /// The IdNat_PS: the subject's UID attribute when present, else its common name up
    /// to the first `/` (CPS certificates write `CN=<IdNat_PS>/<number>`).
    pub id_nat_ps: String,
}

impl ClientCertificate {
    /// Reads the IdNat_PS out of a certificate subject.
    pub fn from_x509(certificate: &openssl::x509::X509Ref) -> Option<ClientCertificate> {
        let subject = certificate.subject_name();
        let text_of = |nid: openssl::nid::Nid| {
            subject
                .entries_by_nid(nid)
                .next()
                .and_then(|entry| entry.data().to_string().ok())
        };
        let id = text_of(openssl::nid::Nid::USERID).or_else(|| {
            text_of(openssl::nid::Nid::COMMONNAME)
                .map(|cn| cn.split('/').next().unwrap_or_default().to_owned())
        })?;
        let id = id.trim().to_owned();
        (!id.is_empty()).then_some(ClientCertificate { id_nat_ps: id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses_duplicates() {
        let directory = Directory::parse(r#"{"professionals":[{"idNatPs":"810000000001","profession":"10","specialty":"SM54"}]}"#).unwrap();
        assert_eq!(
            directory.find("810000000001").unwrap().specialty.as_deref(),
            Some("SM54")
        );
        assert!(directory.find("8").is_none());
        let twice = r#"{"professionals":[{"idNatPs":"1","profession":"10"},{"idNatPs":"1","profession":"21"}]}"#;
        assert!(Directory::parse(twice).unwrap_err().contains("twice"));
        assert!(Directory::parse(r#"{"professionals":[{"idNatPs":"1"}]}"#).is_err());
    }
}
