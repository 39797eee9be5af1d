//! A CDA document (HL7 CDA R2, the DMP's structured documents) read as text for
//! the portal: its title, then each section's title and narrative text, nothing
//! else of the XML (no markup, no style, no reference is followed).

use quick_xml::events::Event;
use quick_xml::reader::Reader;

/// A CDA's readable parts.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Readable {
    pub title: String,
    /// (section title, paragraphs).
    pub sections: Vec<(String, Vec<String>)>,
}

/// Elements of the narrative after which a new paragraph starts.
const BREAKS: [&[u8]; 6] = [b"paragraph", b"br", b"item", b"tr", b"caption", b"content"];

/// The readable parts of a CDA, or `None` when the bytes are not one (not XML,
/// or no `ClinicalDocument`).
pub fn read(bytes: &[u8]) -> Option<Readable> {
    let mut reader = Reader::from_reader(bytes);
    let mut readable = Readable::default();
    let mut path: Vec<Vec<u8>> = Vec::new();
    let mut buffer = Vec::new();
    let mut is_cda = false;
    // The text read since the last element boundary (references split it).
    let mut run = String::new();
    loop {
        let event = reader.read_event_into(&mut buffer).ok()?;
        if !matches!(event, Event::Text(_) | Event::GeneralRef(_)) && !run.is_empty() {
            place(&mut readable, &path, std::mem::take(&mut run));
        }
        match event {
            Event::Start(start) => {
                let name = start.local_name().as_ref().to_vec();
                if path.is_empty() {
                    is_cda = name == b"ClinicalDocument";
                }
                if name == b"section" {
                    readable.sections.push((String::new(), Vec::new()));
                }
                if BREAKS.contains(&name.as_slice())
                    && path.iter().any(|element| element == b"text")
                    && let Some((_, paragraphs)) = readable.sections.last_mut()
                {
                    paragraphs.push(String::new());
                }
                path.push(name);
            }
            Event::Empty(empty) => {
                if BREAKS.contains(&empty.local_name().as_ref())
                    && let Some((_, paragraphs)) = readable.sections.last_mut()
                {
                    paragraphs.push(String::new());
                }
            }
            Event::End(_) => {
                path.pop();
            }
            Event::Text(text) => run.push_str(&text.decode().ok()?),
            Event::GeneralRef(reference) => {
                let name = reference.decode().ok()?;
                let character = match name.as_ref() {
                    "amp" => '&',
                    "lt" => '<',
                    "gt" => '>',
                    "quot" => '"',
                    "apos" => '\'',
                    other => other
                        .strip_prefix("#x")
                        .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                        .or_else(|| other.strip_prefix('#').and_then(|dec| dec.parse().ok()))
                        .and_then(char::from_u32)
                        .unwrap_or('\u{fffd}'),
                };
                run.push(character);
            }
            Event::Eof => break,
            _ => {}
        }
        buffer.clear();
    }
    for (_, paragraphs) in &mut readable.sections {
        paragraphs.retain(|paragraph| !paragraph.trim().is_empty());
    }
    is_cda.then_some(readable)
}

/// Puts a run of text where the path says: the document's title, a section's
/// title, or the narrative's current paragraph.
fn place(readable: &mut Readable, path: &[Vec<u8>], text: String) {
    // XML's layout is not the text's: runs of spaces and line breaks are one space.
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        return;
    }
    let parent = path.last().map(Vec::as_slice);
    let in_section = path.iter().any(|element| element == b"section");
    if !in_section && parent == Some(b"title") && path.len() == 2 {
        readable.title = text;
    } else if in_section && parent == Some(b"title") {
        if let Some((title, _)) = readable.sections.last_mut() {
            *title = text;
        }
    } else if path.iter().any(|element| element == b"text")
        && let Some((_, paragraphs)) = readable.sections.last_mut()
    {
        match paragraphs.last_mut() {
            Some(last) => {
                if !last.is_empty() {
                    last.push(' ');
                }
                last.push_str(&text);
            }
            None => paragraphs.push(text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cda_reads_as_its_title_and_sections() {
        let cda = br#"<?xml version="1.0"?>
<ClinicalDocument xmlns="urn:hl7-org:v3"><title>Compte rendu de consultation</title>
<component><structuredBody><component><section><title>Motif</title>
<text><paragraph>Douleur &amp; fi&#232;vre</paragraph><paragraph>Depuis 3 jours</paragraph></text>
</section></component><component><section><title>Traitement</title>
<text><list><item>Parac&#233;tamol</item><item>Repos</item></list></text></section></component>
</structuredBody></component></ClinicalDocument>"#;
        let readable = read(cda).expect("a CDA");
        assert_eq!(readable.title, "Compte rendu de consultation");
        assert_eq!(
            readable.sections,
            vec![
                (
                    "Motif".to_owned(),
                    vec!["Douleur & fièvre".to_owned(), "Depuis 3 jours".to_owned()]
                ),
                (
                    "Traitement".to_owned(),
                    vec!["Paracétamol".to_owned(), "Repos".to_owned()]
                ),
            ]
        );
        assert_eq!(read(b"<html><title>x</title></html>"), None);
        assert_eq!(read(b"not xml <<<"), None);
    }
}
