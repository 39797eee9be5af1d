//! The proof of opposition (R-LIFE-2): a one-page PDF, dated, naming the person and
//! their number, produced with lopdf in the standard Helvetica font (WinAnsi text).

use lopdf::content::{Content, Operation};
use lopdf::{Document, Object, Stream, dictionary};

/// What the proof states.
pub struct ProofOfOpposition<'a> {
    /// Family and given names, as the Patient carries them.
    pub name: &'a str,
    /// The person's INS number (NIR), or their Patient id when they have none.
    pub number: &'a str,
    /// When the opposition was recorded, e.g. `23/11/2026 à 16:05 (UTC)`.
    pub recorded: &'a str,
    /// A reference the person can quote (the AuditEvent-independent Patient id).
    pub reference: &'a str,
}

/// Text in the standard fonts' WinAnsi encoding (accents included).
fn win_ansi(text: &str) -> Object {
    let (bytes, _, _) = encoding_rs::WINDOWS_1252.encode(text);
    Object::string_literal(bytes.into_owned())
}

fn line(operations: &mut Vec<Operation>, font: &str, size: i64, y: i64, text: &str) {
    operations.extend([
        Operation::new("BT", vec![]),
        Operation::new("Tf", vec![font.into(), size.into()]),
        Operation::new("Td", vec![56.into(), y.into()]),
        Operation::new("Tj", vec![win_ansi(text)]),
        Operation::new("ET", vec![]),
    ]);
}

/// Renders the proof.
pub fn render(proof: &ProofOfOpposition<'_>) -> Result<Vec<u8>, String> {
    let mut document = Document::with_version("1.7");
    let pages_id = document.new_object_id();
    let regular = document.add_object(dictionary! {
        "Type" => "Font",
        "Subtype" => "Type1",
        "BaseFont" => "Helvetica",
        "Encoding" => "WinAnsiEncoding",
    });
    let bold = document.add_object(dictionary! {
        "Type" => "Font",
        "Subtype" => "Type1",
        "BaseFont" => "Helvetica-Bold",
        "Encoding" => "WinAnsiEncoding",
    });
    let resources = document.add_object(dictionary! {
        "Font" => dictionary! { "F1" => regular, "F2" => bold },
    });
    let mut operations = Vec::new();
    line(&mut operations, "F2", 18, 770, "Mon espace santé");
    line(
        &mut operations,
        "F2",
        14,
        730,
        "Attestation d'opposition à la création de Mon espace santé",
    );
    let body = [
        format!("Nom : {}", proof.name),
        format!("Numéro de sécurité sociale (INS) : {}", proof.number),
        format!("Opposition enregistrée le {}", proof.recorded),
        format!("Référence : {}", proof.reference),
        String::new(),
        "La personne ci-dessus s'est opposée à la création de son espace Mon espace santé."
            .to_owned(),
        "Aucun professionnel de santé ne peut consulter ni alimenter cet espace.".to_owned(),
        "Elle peut revenir sur sa décision à tout moment en demandant son activation.".to_owned(),
    ];
    for (index, text) in body.iter().enumerate() {
        line(&mut operations, "F1", 11, 690 - 20 * index as i64, text);
    }
    let content = Content { operations };
    let encoded = content
        .encode()
        .map_err(|error| format!("cannot encode the proof: {error}"))?;
    let content_id = document.add_object(Stream::new(dictionary! {}, encoded));
    let page_id = document.add_object(dictionary! {
        "Type" => "Page",
        "Parent" => pages_id,
        "Contents" => content_id,
        "Resources" => resources,
        "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
    });
    document.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! {
            "Type" => "Pages",
            "Kids" => vec![page_id.into()],
            "Count" => 1,
        }),
    );
    let catalog_id = document.add_object(dictionary! {
        "Type" => "Catalog",
        "Pages" => pages_id,
    });
    let info_id = document.add_object(dictionary! {
        "Title" => win_ansi("Attestation d'opposition à Mon espace santé"),
        "Producer" => Object::string_literal("dmp-fhir-server"),
    });
    document.trailer.set("Root", catalog_id);
    document.trailer.set("Info", info_id);
    let mut bytes = Vec::new();
    document
        .save_to(&mut bytes)
        .map_err(|error| format!("cannot write the proof: {error}"))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_proof_parses_back_with_its_text() {
        let bytes = render(&ProofOfOpposition {
            name: "DURAND Hélène",
            number: "285067512345639",
            recorded: "23/11/2026 à 16:05 (UTC)",
            reference: "Patient/abc",
        })
        .unwrap();
        assert!(bytes.starts_with(b"%PDF-1.7"));
        let document = Document::load_mem(&bytes).unwrap();
        let text = document.extract_text(&[1]).unwrap();
        for expected in [
            "DURAND Hélène",
            "285067512345639",
            "23/11/2026",
            "opposition",
        ] {
            assert!(text.contains(expected), "{expected:?} not in {text:?}");
        }
    }
}
