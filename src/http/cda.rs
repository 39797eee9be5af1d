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

/// The deepest nesting of elements read: a CDA's narrative nests a few levels
/// (sections in components, lists in tables); a file nested deeper is not read as
/// one, so that the work and memory of a reading stay in proportion to the file.
pub const MAX_DEPTH: usize = 256;

/// The most sections and paragraphs a reading shows, and characters of text: a
/// file past them is not read as a CDA (the holder downloads it), so that a page
/// stays in proportion to what a document says, not to how many empty elements
/// its file repeats.
pub const MAX_SECTIONS: usize = 1_000;
pub const MAX_PARAGRAPHS: usize = 20_000;
pub const MAX_TEXT: usize = 4 * 1024 * 1024;

/// Where the reader stands: the open elements, and how many of them are sections
/// and narrative texts (counted, so that no event walks the path).
#[derive(Default)]
struct Position {
    path: Vec<Vec<u8>>,
    sections: usize,
    texts: usize,
    /// Paragraphs started and characters placed so far, against the bounds.
    paragraphs: usize,
    text: usize,
}

/// The readable parts of a CDA, or `None` when the bytes are not one (not XML,
/// no `ClinicalDocument`, or nested deeper than [`MAX_DEPTH`]). Its work is linear
/// in the bytes.
pub fn read(bytes: &[u8]) -> Option<Readable> {
    let mut reader = Reader::from_reader(bytes);
    let mut readable = Readable::default();
    let mut at = Position::default();
    let mut buffer = Vec::new();
    let mut is_cda = false;
    // The text read since the last element boundary (references split it).
    let mut run = String::new();
    loop {
        let event = reader.read_event_into(&mut buffer).ok()?;
        if !matches!(event, Event::Text(_) | Event::GeneralRef(_)) && !run.is_empty() {
            place(&mut readable, &mut at, std::mem::take(&mut run));
        }
        match event {
            Event::Start(start) => {
                if at.path.len() == MAX_DEPTH {
                    return None;
                }
                let name = start.local_name().as_ref().to_vec();
                if at.path.is_empty() {
                    is_cda = name == b"ClinicalDocument";
                }
                if name == b"section" {
                    if readable.sections.len() == MAX_SECTIONS {
                        return None;
                    }
                    readable.sections.push((String::new(), Vec::new()));
                    at.sections += 1;
                }
                if BREAKS.contains(&name.as_slice()) && at.texts > 0 {
                    new_paragraph(&mut readable, &mut at);
                }
                if name == b"text" {
                    at.texts += 1;
                }
                at.path.push(name);
            }
            Event::Empty(empty) if BREAKS.contains(&empty.local_name().as_ref()) => {
                new_paragraph(&mut readable, &mut at);
            }
            Event::End(_) => match at.path.pop().as_deref() {
                Some(b"section") => at.sections -= 1,
                Some(b"text") => at.texts -= 1,
                _ => {}
            },
            Event::Text(text) => {
                run.push_str(&text.decode().ok()?);
                if run.len() > MAX_TEXT {
                    return None;
                }
            }
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
        if at.paragraphs > MAX_PARAGRAPHS || at.text > MAX_TEXT {
            return None;
        }
        buffer.clear();
    }
    for (_, paragraphs) in &mut readable.sections {
        paragraphs.retain(|paragraph| !paragraph.trim().is_empty());
    }
    readable
        .sections
        .retain(|(title, paragraphs)| !title.is_empty() || !paragraphs.is_empty());
    is_cda.then_some(readable)
}

/// Starts a paragraph in the current section's narrative, unless its last one is
/// still empty (a run of breaks is one).
fn new_paragraph(readable: &mut Readable, at: &mut Position) {
    if let Some((_, paragraphs)) = readable.sections.last_mut()
        && paragraphs.last().is_none_or(|last| !last.is_empty())
    {
        paragraphs.push(String::new());
        at.paragraphs += 1;
    }
}

/// Puts a run of text where the reader stands: the document's title, a section's
/// title, or the narrative's current paragraph.
fn place(readable: &mut Readable, at: &mut Position, text: String) {
    // XML's layout is not the text's: runs of spaces and line breaks are one space.
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        return;
    }
    at.text += text.len();
    let parent = at.path.last().map(Vec::as_slice);
    let in_section = at.sections > 0;
    if !in_section && parent == Some(b"title") && at.path.len() == 2 {
        readable.title = text;
    } else if in_section && parent == Some(b"title") {
        if let Some((title, _)) = readable.sections.last_mut() {
            *title = text;
        }
    } else if at.texts > 0
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

    /// Nested breaks cost each event its own work, not a walk of what is open: a
    /// file nested up to the bound is read, one nested deeper is not a CDA.
    #[test]
    fn nesting_is_bounded_and_each_element_costs_the_same() {
        let nested = |depth: usize| {
            let mut cda = String::from("<ClinicalDocument><section><text>");
            cda.push_str(&"<br>".repeat(depth));
            cda.push_str("fin");
            cda.push_str(&"</br>".repeat(depth));
            cda.push_str("</text></section></ClinicalDocument>");
            cda
        };
        let readable = read(nested(MAX_DEPTH - 3).as_bytes()).expect("within the bound");
        assert_eq!(
            readable.sections,
            vec![(String::new(), vec!["fin".to_owned()])]
        );
        assert_eq!(read(nested(MAX_DEPTH - 2).as_bytes()), None);
        // Thirty thousand breaks side by side, every other one before text: a
        // paragraph for each text, none for the breaks between.
        let mut wide = String::from("<ClinicalDocument><section><text>");
        for n in 0..30_000 {
            wide.push_str(if n % 2 == 0 { "<br/>" } else { "<br/>x" });
        }
        wide.push_str("</text></section></ClinicalDocument>");
        let readable = read(wide.as_bytes()).expect("a CDA");
        assert_eq!(readable.sections[0].1.len(), 15_000);
    }

    /// A page stays in proportion to what the document says: sections, paragraphs
    /// and text past their bounds make the file no readable CDA, and empty sections
    /// show nothing.
    #[test]
    fn a_reading_is_bounded_in_sections_paragraphs_and_text() {
        let cda = |body: &str| format!("<ClinicalDocument>{body}</ClinicalDocument>");
        let empty = cda(&"<section></section>".repeat(MAX_SECTIONS));
        assert_eq!(read(empty.as_bytes()).expect("within").sections, vec![]);
        let more = cda(&"<section></section>".repeat(MAX_SECTIONS + 1));
        assert_eq!(read(more.as_bytes()), None);
        let paragraphs = |n: usize| {
            cda(&format!(
                "<section><text>{}</text></section>",
                "<paragraph>x</paragraph>".repeat(n)
            ))
        };
        assert!(read(paragraphs(MAX_PARAGRAPHS - 1).as_bytes()).is_some());
        assert_eq!(read(paragraphs(MAX_PARAGRAPHS + 2).as_bytes()), None);
        let text = |n: usize| {
            cda(&format!(
                "<section><text>{}</text></section>",
                "x".repeat(n)
            ))
        };
        assert!(read(text(MAX_TEXT).as_bytes()).is_some());
        assert_eq!(read(text(MAX_TEXT + 1).as_bytes()), None);
    }
}
