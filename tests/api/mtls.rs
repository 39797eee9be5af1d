//! Mutual TLS (SPEC §2): a client certificate signed by the configured CA identifies a
//! professional, whose profession comes from the directory; the access rules then
//! apply as to a token. Certificates are made at test time.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::ssl::{SslConnector, SslMethod};
use openssl::x509::extension::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
};
use openssl::x509::{X509, X509NameBuilder};
use serde_json::{Value, json};

use crate::support::fixtures::{DOCTOR_IDNAT, document, nir, patient};
use crate::support::{As, TestApp, temp_dir};

struct Issued {
    cert: X509,
    key: PKey<Private>,
}

fn key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

/// A certificate for `subject`, signed by `issuer` (self-signed when `None`).
fn issue(subject: &[(Nid, &str)], issuer: Option<&Issued>, kind: &str) -> Issued {
    let key = key();
    let mut name = X509NameBuilder::new().unwrap();
    for (nid, value) in subject {
        name.append_entry_by_nid(*nid, value).unwrap();
    }
    let name = name.build();
    let mut builder = X509::builder().unwrap();
    builder.set_version(2).unwrap();
    let mut serial = BigNum::new().unwrap();
    serial.rand(64, MsbOption::MAYBE_ZERO, false).unwrap();
    builder
        .set_serial_number(&serial.to_asn1_integer().unwrap())
        .unwrap();
    builder.set_subject_name(&name).unwrap();
    builder
        .set_issuer_name(issuer.map_or(&name, |ca| ca.cert.subject_name()))
        .unwrap();
    builder.set_pubkey(&key).unwrap();
    builder
        .set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    builder
        .set_not_after(&Asn1Time::days_from_now(2).unwrap())
        .unwrap();
    match kind {
        "ca" => {
            builder
                .append_extension(BasicConstraints::new().critical().ca().build().unwrap())
                .unwrap();
            builder
                .append_extension(KeyUsage::new().key_cert_sign().crl_sign().build().unwrap())
                .unwrap();
        }
        "server" => {
            let san = SubjectAlternativeName::new()
                .dns("localhost")
                .build(&builder.x509v3_context(issuer.map(|ca| ca.cert.as_ref()), None))
                .unwrap();
            builder.append_extension(san).unwrap();
            builder
                .append_extension(ExtendedKeyUsage::new().server_auth().build().unwrap())
                .unwrap();
        }
        _ => {
            builder
                .append_extension(ExtendedKeyUsage::new().client_auth().build().unwrap())
                .unwrap();
        }
    }
    let signer = issuer.map_or(&key, |ca| &ca.key);
    builder.sign(signer, MessageDigest::sha256()).unwrap();
    Issued {
        cert: builder.build(),
        key,
    }
}

fn write_pem(dir: &Path, name: &str, issued: &Issued) -> (PathBuf, PathBuf) {
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&cert, issued.cert.to_pem().unwrap()).unwrap();
    std::fs::write(&key, issued.key.private_key_to_pem_pkcs8().unwrap()).unwrap();
    (cert, key)
}

struct TlsServer {
    app: TestApp,
    dir: PathBuf,
    ca: Issued,
}

/// A server on HTTPS with client certificates of `ca` and a directory of two médecins.
fn tls_server() -> TlsServer {
    let dir = temp_dir("tls");
    let ca = issue(&[(Nid::COMMONNAME, "Test IGC-Santé")], None, "ca");
    let server = issue(&[(Nid::COMMONNAME, "localhost")], Some(&ca), "server");
    let (ca_file, _) = write_pem(&dir, "ca", &ca);
    let (cert, key) = write_pem(&dir, "server", &server);
    let directory = dir.join("directory.json");
    std::fs::write(&directory, json!({ "source": "test", "professionals": [
        { "idNatPs": DOCTOR_IDNAT, "profession": "10", "specialty": "SM54", "name": "Dr Médecin Traitant" },
        { "idNatPs": "810000000003", "profession": "10" }
    ] }).to_string()).unwrap();
    let app = TestApp::with(|config| {
        config.tls_cert = Some(cert);
        config.tls_key = Some(key);
        config.tls_client_ca = Some(ca_file);
        config.professional_directory = Some(directory);
    });
    TlsServer { app, dir, ca }
}

impl TlsServer {
    /// One HTTPS exchange; `Err` when the TLS handshake or the exchange fails.
    fn send(
        &self,
        client: Option<&Issued>,
        method: &str,
        path: &str,
        token: Option<String>,
        body: Option<&Value>,
    ) -> Result<(u16, String), String> {
        let mut connector =
            SslConnector::builder(SslMethod::tls_client()).map_err(|e| e.to_string())?;
        connector
            .set_ca_file(self.dir.join("ca.crt"))
            .map_err(|e| e.to_string())?;
        if let Some(client) = client {
            connector
                .set_certificate(&client.cert)
                .map_err(|e| e.to_string())?;
            connector
                .set_private_key(&client.key)
                .map_err(|e| e.to_string())?;
        }
        let address = self.app.base.trim_start_matches("http://");
        let stream = TcpStream::connect(address).map_err(|e| e.to_string())?;
        let mut tls = connector
            .build()
            .connect("localhost", stream)
            .map_err(|e| e.to_string())?;
        let body = body.map(Value::to_string).unwrap_or_default();
        let mut request = format!(
            "{method} /{path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        if !body.is_empty() {
            request.push_str("Content-Type: application/fhir+json\r\n");
        }
        if let Some(token) = token {
            request.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(&body);
        tls.write_all(request.as_bytes())
            .map_err(|e| e.to_string())?;
        let mut answer = String::new();
        tls.read_to_string(&mut answer).map_err(|e| e.to_string())?;
        let status = answer
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| format!("no HTTP answer: {answer:?}"))?;
        let body = answer
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_owned())
            .unwrap_or_default();
        Ok((status, body))
    }

    fn create(&self, who: &As, resource: &Value) -> String {
        let kind = resource["resourceType"].as_str().unwrap();
        let (status, body) = self
            .send(None, "POST", kind, who.token(), Some(resource))
            .unwrap();
        assert_eq!(status, 201, "{body}");
        serde_json::from_str::<Value>(&body).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

fn professional_certificate(server: &TlsServer, subject: &[(Nid, &str)]) -> Issued {
    issue(subject, Some(&server.ca), "client")
}

#[test]
fn a_client_certificate_identifies_a_professional_and_the_rules_apply() {
    let server = tls_server();
    let patient_id = server.create(
        &As::System,
        &patient(&nir(), "Martin", "Claire", "1980-05-01"),
    );
    let document_id = server.create(
        &As::doctor(),
        &document(&patient_id, "11488-4", "2024-01-01"),
    );
    // The médecin traitant's CPS: CN=<IdNat_PS>/<number>.
    let gp = professional_certificate(
        &server,
        &[
            (Nid::COMMONNAME, &format!("{DOCTOR_IDNAT}/0001")),
            (Nid::ORGANIZATIONNAME, "Cabinet"),
        ],
    );
    let (status, body) = server
        .send(
            Some(&gp),
            "GET",
            &format!("DocumentReference/{document_id}"),
            None,
            None,
        )
        .unwrap();
    assert_eq!(status, 200, "{body}");
    // Another médecin, identified by the UID attribute, without authorisation (R-ACC-3).
    let stranger = professional_certificate(
        &server,
        &[
            (Nid::USERID, "810000000003"),
            (Nid::COMMONNAME, "Dr Inconnu"),
        ],
    );
    let (status, body) = server
        .send(
            Some(&stranger),
            "GET",
            &format!("DocumentReference?patient={patient_id}"),
            None,
            None,
        )
        .unwrap();
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("R-ACC-3"));
    // A document by id: as if it did not exist.
    let (status, body) = server
        .send(
            Some(&stranger),
            "GET",
            &format!("DocumentReference/{document_id}"),
            None,
            None,
        )
        .unwrap();
    assert_eq!(status, 404, "{body}");
    assert!(!body.contains("R-ACC-3"), "{body}");
    // R-ACC-10 still lets them read the identity.
    let (status, _) = server
        .send(
            Some(&stranger),
            "GET",
            &format!("Patient/{patient_id}"),
            None,
            None,
        )
        .unwrap();
    assert_eq!(status, 200);
}

#[test]
fn certificates_outside_the_directory_or_the_ca_get_nothing() {
    let server = tls_server();
    let patient_id = server.create(
        &As::System,
        &patient(&nir(), "Martin", "Claire", "1980-05-01"),
    );
    let unknown = professional_certificate(&server, &[(Nid::COMMONNAME, "819999999999/0001")]);
    let (status, body) = server
        .send(
            Some(&unknown),
            "GET",
            &format!("Patient/{patient_id}"),
            None,
            None,
        )
        .unwrap();
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("directory"));
    // A certificate from another CA does not get through the handshake.
    let rogue_ca = issue(&[(Nid::COMMONNAME, "Rogue CA")], None, "ca");
    let rogue = issue(
        &[(Nid::COMMONNAME, &format!("{DOCTOR_IDNAT}/0001"))],
        Some(&rogue_ca),
        "client",
    );
    let exchange = server.send(
        Some(&rogue),
        "GET",
        &format!("Patient/{patient_id}"),
        None,
        None,
    );
    assert!(
        exchange.is_err(),
        "a rogue certificate must not be served: {exchange:?}"
    );
    // Without a certificate or a token: 401; with a token over TLS: served.
    let (status, _) = server
        .send(None, "GET", &format!("Patient/{patient_id}"), None, None)
        .unwrap();
    assert_eq!(status, 401);
    let (status, _) = server
        .send(
            None,
            "GET",
            &format!("Patient/{patient_id}"),
            As::doctor().token(),
            None,
        )
        .unwrap();
    assert_eq!(status, 200);
}
