//! The portal's medical profile (R-UI-1): the five first sign-in questions (height,
//! weight, conditions, treatments, allergies; each skippable, the whole too) and the
//! profile page that shows and edits the answers later. Answers are FHIR resources
//! of the space (Observation, Condition, MedicationStatement, AllergyIntolerance),
//! written and deleted through the pipeline as the holder, so professionals read
//! them under the space's rules (R-ACC-1 … 5, 12, 13) and every change is traced.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use chrono::Utc;
use serde_json::{Value, json};

use super::internal::{Fhir, Refused};
use super::pages::{Csrf, Form, csrf_of, page, render, see_other};
use super::portal::{entries, french_date, signed_in, signed_in_form};
use crate::AppState;

type State = web::Data<AppState>;

use crate::fhir::LOINC_SYSTEM as LOINC;
const UCUM: &str = "http://unitsofmeasure.org";
/// LOINC body height and body weight (the FHIR vital signs codes).
const HEIGHT: &str = "8302-2";
const WEIGHT: &str = "29463-7";
/// At most this many entries per answer (one per line), each at most this long.
const MAX_LINES: usize = 10;
const MAX_LINE_CHARS: usize = 200;

/// A list of the profile: its name in the form and the page, and its FHIR type.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ListKind {
    Conditions,
    Treatments,
    Allergies,
}

impl ListKind {
    const ALL: [ListKind; 3] = [
        ListKind::Conditions,
        ListKind::Treatments,
        ListKind::Allergies,
    ];

    fn slug(self) -> &'static str {
        match self {
            ListKind::Conditions => "maladies",
            ListKind::Treatments => "traitements",
            ListKind::Allergies => "allergies",
        }
    }

    fn from_slug(slug: &str) -> Option<ListKind> {
        ListKind::ALL.into_iter().find(|kind| kind.slug() == slug)
    }

    fn resource_type(self) -> &'static str {
        match self {
            ListKind::Conditions => "Condition",
            ListKind::Treatments => "MedicationStatement",
            ListKind::Allergies => "AllergyIntolerance",
        }
    }

    fn title(self) -> &'static str {
        match self {
            ListKind::Conditions => "Maladies et sujets de santé",
            ListKind::Treatments => "Traitements",
            ListKind::Allergies => "Allergies et intolérances",
        }
    }

    /// The question of the first sign-in (seed 002) and its examples.
    fn question(self) -> (&'static str, &'static str) {
        match self {
            ListKind::Conditions => (
                "Est-ce que j'ai des maladies ou d'autres sujets de santé, actuels ou passés ?",
                "Par exemple : maladies graves, suivi dentaire, grossesses, douleurs chroniques, opérations.",
            ),
            ListKind::Treatments => (
                "Est-ce que je prends un traitement ?",
                "Par exemple : médicaments, soins, dispositifs médicaux.",
            ),
            ListKind::Allergies => (
                "Est-ce que j'ai des allergies ?",
                "Par exemple : allergies alimentaires, médicamenteuses, intolérances.",
            ),
        }
    }

    /// The words of one entry, as the holder typed them.
    fn text_of(self, resource: &Value) -> String {
        let concept = match self {
            ListKind::Treatments => &resource["medicationCodeableConcept"],
            _ => &resource["code"],
        };
        concept["text"]
            .as_str()
            .or_else(|| concept.pointer("/coding/0/display").and_then(Value::as_str))
            .unwrap_or("(sans libellé)")
            .to_owned()
    }

    /// A new entry the holder states about themselves.
    fn entry(self, patient: &str, text: &str) -> Value {
        let me = json!({ "reference": format!("Patient/{patient}") });
        let today = Utc::now().format("%Y-%m-%d").to_string();
        match self {
            ListKind::Conditions => json!({
                "resourceType": "Condition",
                "code": { "text": text },
                "subject": me,
                "recordedDate": today,
                "asserter": me,
            }),
            ListKind::Treatments => json!({
                "resourceType": "MedicationStatement",
                "status": "active",
                "medicationCodeableConcept": { "text": text },
                "subject": me,
                "dateAsserted": today,
                "informationSource": me,
            }),
            // ait-1: a clinical status unless entered in error.
            ListKind::Allergies => json!({
                "resourceType": "AllergyIntolerance",
                "clinicalStatus": { "coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                    "code": "active"
                }] },
                "code": { "text": text },
                "patient": me,
                "recordedDate": today,
                "asserter": me,
            }),
        }
    }
}

/// A measure of the profile (height in cm, weight in kg, as the vital signs
/// profile codes them), typed in metres and kilograms.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Measure {
    Height,
    Weight,
}

impl Measure {
    fn slug(self) -> &'static str {
        match self {
            Measure::Height => "taille",
            Measure::Weight => "poids",
        }
    }

    fn code(self) -> &'static str {
        match self {
            Measure::Height => HEIGHT,
            Measure::Weight => WEIGHT,
        }
    }

    fn question(self) -> &'static str {
        match self {
            Measure::Height => "Quelle est ma taille ?",
            Measure::Weight => "Quel est mon poids ?",
        }
    }

    fn unit_label(self) -> &'static str {
        match self {
            Measure::Height => "en mètres, par exemple 1,72",
            Measure::Weight => "en kilogrammes, par exemple 68,5",
        }
    }

    /// The stored value from what was typed (a comma or a dot as the decimal
    /// mark), within what a person measures; `Err` says what is expected.
    fn parse(self, typed: &str) -> Result<f64, String> {
        let typed = typed.trim().replace(',', ".");
        let value: Option<f64> = typed.parse().ok().filter(|value: &f64| value.is_finite());
        match (self, value) {
            (Measure::Height, Some(metres)) if (0.2..=2.6).contains(&metres) => {
                Ok((metres * 100.0).round())
            }
            (Measure::Weight, Some(kilograms)) if (0.5..=500.0).contains(&kilograms) => {
                Ok((kilograms * 10.0).round() / 10.0)
            }
            (Measure::Height, _) => Err(
                "Indiquez votre taille en mètres, entre 0,20 et 2,60 (par exemple 1,72).".into(),
            ),
            (Measure::Weight, _) => Err(
                "Indiquez votre poids en kilogrammes, entre 0,5 et 500 (par exemple 68,5).".into(),
            ),
        }
    }

    /// A stored value as the page shows it.
    fn shown(self, resource: &Value) -> Option<String> {
        let value = resource.pointer("/valueQuantity/value")?.as_f64()?;
        let unit = resource
            .pointer("/valueQuantity/code")
            .and_then(Value::as_str);
        Some(match (self, unit) {
            (Measure::Height, Some("cm")) => format!("{:.2} m", value / 100.0).replace('.', ","),
            (Measure::Height, Some("m")) => format!("{value:.2} m").replace('.', ","),
            (Measure::Weight, Some("kg")) => format!("{value} kg").replace('.', ","),
            (_, unit) => format!("{value} {}", unit.unwrap_or("")),
        })
    }

    fn observation(self, patient: &str, value: f64) -> Value {
        let (unit, display) = match self {
            Measure::Height => ("cm", "Taille"),
            Measure::Weight => ("kg", "Poids"),
        };
        json!({
            "resourceType": "Observation",
            "status": "final",
            "category": [{ "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                "code": "vital-signs"
            }] }],
            "code": { "coding": [{ "system": LOINC, "code": self.code(), "display": display }], "text": display },
            "subject": { "reference": format!("Patient/{patient}") },
            "effectiveDateTime": Utc::now().format("%Y-%m-%d").to_string(),
            "performer": [{ "reference": format!("Patient/{patient}") }],
            "valueQuantity": { "value": value, "unit": unit, "system": UCUM, "code": unit },
        })
    }
}

/// The steps of the first sign-in questionnaire, in order.
const STEPS: [&str; 5] = ["taille", "poids", "maladies", "traitements", "allergies"];

struct EntryView {
    id: String,
    text: String,
    date: String,
}

struct ListView {
    slug: &'static str,
    title: &'static str,
    entries: Vec<EntryView>,
}

#[derive(Template)]
#[template(path = "profile.html")]
struct ProfilePage<'a> {
    section: &'a str,
    notice: Option<&'a str>,
    error: Option<String>,
    csrf: &'a str,
    height: Option<(String, String)>,
    weight: Option<(String, String)>,
    lists: Vec<ListView>,
}

#[derive(Template)]
#[template(path = "profile_question.html")]
struct QuestionPage<'a> {
    csrf: &'a str,
    error: Option<String>,
    step: &'a str,
    number: usize,
    count: usize,
    question: &'a str,
    hint: &'a str,
    /// A measure's unit label; empty for a list question.
    unit: &'a str,
    typed: String,
}

/// The latest value of a measure and its date.
async fn latest(
    fhir: &Fhir<'_>,
    patient: &str,
    measure: Measure,
) -> Result<Option<(String, String)>, Refused> {
    let bundle = fhir
        .search(
            "Observation",
            vec![
                ("patient".into(), patient.to_owned()),
                ("code".into(), format!("{LOINC}|{}", measure.code())),
                ("_sort".into(), "-date".into()),
                ("_count".into(), "1".into()),
            ],
        )
        .await?;
    Ok(entries(&bundle).first().and_then(|observation| {
        Some((
            measure.shown(observation)?,
            french_date(
                observation["effectiveDateTime"].as_str().unwrap_or(""),
                false,
            ),
        ))
    }))
}

async fn list(fhir: &Fhir<'_>, patient: &str, kind: ListKind) -> Result<ListView, Refused> {
    let bundle = fhir
        .search(
            kind.resource_type(),
            vec![
                ("patient".into(), patient.to_owned()),
                ("_sort".into(), "-_lastUpdated".into()),
                ("_count".into(), "100".into()),
            ],
        )
        .await?;
    Ok(ListView {
        slug: kind.slug(),
        title: kind.title(),
        entries: entries(&bundle)
            .into_iter()
            .map(|resource| EntryView {
                id: resource["id"].as_str().unwrap_or("").to_owned(),
                text: kind.text_of(resource),
                date: french_date(
                    resource
                        .pointer("/meta/lastUpdated")
                        .and_then(Value::as_str)
                        .unwrap_or(""),
                    false,
                ),
            })
            .collect(),
    })
}

async fn profile_page(
    state: &AppState,
    request: &HttpRequest,
    csrf: &Csrf,
    notice: Option<&str>,
    error: Option<String>,
) -> HttpResponse {
    let (session, fhir) = match signed_in(state, request, "/espace/profil").await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let patient = &session.patient;
    let read = async {
        let height = latest(&fhir, patient, Measure::Height).await?;
        let weight = latest(&fhir, patient, Measure::Weight).await?;
        let mut lists = Vec::new();
        for kind in ListKind::ALL {
            lists.push(list(&fhir, patient, kind).await?);
        }
        Ok::<_, Refused>((height, weight, lists))
    };
    let (height, weight, lists, error) = match read.await {
        Ok((height, weight, lists)) => (height, weight, lists, error),
        Err(refused) => (None, None, Vec::new(), Some(refused.in_french())),
    };
    let html = render(&ProfilePage {
        section: "profil",
        notice,
        error,
        csrf: &csrf.value,
        height,
        weight,
        lists,
    });
    page(StatusCode::OK, html, csrf, None)
}

/// `GET /espace/profil`.
pub async fn profile(state: State, request: HttpRequest) -> HttpResponse {
    let csrf = csrf_of(&state, &request);
    let notice = match request.query_string() {
        "fait=mesure" => Some("La mesure est enregistrée."),
        "fait=ajout" => Some("C'est ajouté à votre profil médical."),
        "fait=suppression" => Some("C'est supprimé de votre profil médical, définitivement."),
        _ => None,
    };
    profile_page(&state, &request, &csrf, notice, None).await
}

/// The lines of a list answer: trimmed, non-empty, bounded.
fn lines(typed: &str) -> Result<Vec<String>, String> {
    let lines: Vec<String> = typed
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect();
    if lines.len() > MAX_LINES {
        return Err(format!("{MAX_LINES} lignes au plus à la fois."));
    }
    if lines
        .iter()
        .any(|line| line.chars().count() > MAX_LINE_CHARS)
    {
        return Err(format!("{MAX_LINE_CHARS} caractères au plus par ligne."));
    }
    Ok(lines)
}

/// Stores what one form says: a measure, or the lines of a list. `Ok(false)`: the
/// form said nothing to store.
async fn store_answer(
    fhir: &Fhir<'_>,
    patient: &str,
    form: &Form,
    step: &str,
) -> Result<bool, String> {
    for measure in [Measure::Height, Measure::Weight] {
        if step == measure.slug() {
            let typed = form.get("valeur");
            if typed.trim().is_empty() {
                return Ok(false);
            }
            let value = measure.parse(typed)?;
            fhir.create("Observation", measure.observation(patient, value))
                .await
                .map_err(|refused| refused.in_french())?;
            return Ok(true);
        }
    }
    let Some(kind) = ListKind::from_slug(step) else {
        return Err("Cette question n'existe pas.".into());
    };
    let typed = lines(form.get("texte"))?;
    if typed.is_empty() {
        return Ok(false);
    }
    for line in typed {
        fhir.create(kind.resource_type(), kind.entry(patient, &line))
            .await
            .map_err(|refused| refused.in_french())?;
    }
    Ok(true)
}

/// `POST /espace/profil/{mesure|ajouter|supprimer}`.
pub async fn profile_post(
    state: State,
    request: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    let verb = path.into_inner();
    let (csrf, form, session, fhir) =
        match signed_in_form(&state, &request, payload, "/espace/profil").await {
            Ok(found) => found,
            Err(response) => return response,
        };
    let outcome = match verb.as_str() {
        "mesure" => {
            let step = form.get("mesure").to_owned();
            if !matches!(step.as_str(), "taille" | "poids") {
                Err("Choisissez la taille ou le poids.".to_owned())
            } else {
                match store_answer(&fhir, &session.patient, &form, &step).await {
                    Ok(true) => Ok("mesure"),
                    Ok(false) => Err("Indiquez une valeur.".into()),
                    Err(error) => Err(error),
                }
            }
        }
        "ajouter" => {
            let step = form.get("liste").to_owned();
            if ListKind::from_slug(&step).is_none() {
                Err("Cette liste n'existe pas.".to_owned())
            } else {
                match store_answer(&fhir, &session.patient, &form, &step).await {
                    Ok(true) => Ok("ajout"),
                    Ok(false) => Err("Écrivez ce que vous voulez ajouter.".into()),
                    Err(error) => Err(error),
                }
            }
        }
        "supprimer" => match ListKind::from_slug(form.get("liste")) {
            None => Err("Cette liste n'existe pas.".to_owned()),
            Some(kind) => fhir
                .delete(kind.resource_type(), form.get("id"))
                .await
                .map(|()| "suppression")
                .map_err(|refused| refused.in_french()),
        },
        _ => return super::portal::not_found(state, request).await,
    };
    match outcome {
        Ok(done) => see_other(&format!("/espace/profil?fait={done}")),
        Err(error) => {
            let mut response = profile_page(&state, &request, &csrf, None, Some(error)).await;
            *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            response
        }
    }
}

fn question_page(csrf: &Csrf, step: &str, error: Option<String>, typed: String) -> HttpResponse {
    let Some(number) = STEPS.iter().position(|known| *known == step) else {
        return super::portal::not_found_page(csrf);
    };
    let (question, hint, unit) = match ListKind::from_slug(step) {
        Some(kind) => {
            let (question, hint) = kind.question();
            (question, hint, "")
        }
        None => {
            let measure = if step == "taille" {
                Measure::Height
            } else {
                Measure::Weight
            };
            (measure.question(), "", measure.unit_label())
        }
    };
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let html = render(&QuestionPage {
        csrf: &csrf.value,
        error,
        step,
        number: number + 1,
        count: STEPS.len(),
        question,
        hint,
        unit,
        typed,
    });
    page(status, html, csrf, None)
}

/// The page after `step`: the next question, or the thanks.
fn next_of(step: &str) -> String {
    match STEPS.iter().position(|known| *known == step) {
        Some(index) if index + 1 < STEPS.len() => {
            format!("/espace/profil/questions/{}", STEPS[index + 1])
        }
        _ => "/espace/profil/questions/merci".into(),
    }
}

/// `GET /espace/profil/questions/{step}`.
pub async fn question(state: State, request: HttpRequest, path: web::Path<String>) -> HttpResponse {
    let step = path.into_inner();
    let csrf = csrf_of(&state, &request);
    let back = format!("/espace/profil/questions/{step}");
    if let Err(response) = signed_in(&state, &request, &back).await {
        return response;
    }
    if step == "merci" {
        return super::pages::message(
            StatusCode::OK,
            &csrf,
            "Merci !",
            "Merci d'avoir complété ces informations. Vous pourrez les retrouver et les modifier dans votre profil médical.",
            Some(("/espace", "Accéder à Mon espace santé")),
        );
    }
    question_page(&csrf, &step, None, String::new())
}

/// `POST /espace/profil/questions/{step}`: the answer stored (unless skipped), then
/// the next question.
pub async fn answer(
    state: State,
    request: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    let step = path.into_inner();
    if !STEPS.contains(&step.as_str()) {
        return super::portal::not_found(state, request).await;
    }
    let back = format!("/espace/profil/questions/{step}");
    let (csrf, form, session, fhir) = match signed_in_form(&state, &request, payload, &back).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    if form.get("passer") == "oui" || form.get("reponse") == "non" {
        return see_other(&next_of(&step));
    }
    if ListKind::from_slug(&step).is_some() && form.get("reponse") != "oui" {
        return question_page(
            &csrf,
            &step,
            Some("Répondez oui ou non, ou passez la question.".into()),
            form.get("texte").to_owned(),
        );
    }
    match store_answer(&fhir, &session.patient, &form, &step).await {
        Ok(true) => see_other(&next_of(&step)),
        Ok(false) => {
            let error = if ListKind::from_slug(&step).is_some() {
                "Décrivez-les (une par ligne), ou répondez non."
            } else {
                "Le champ est obligatoire : indiquez une valeur, ou passez la question."
            };
            question_page(&csrf, &step, Some(error.into()), String::new())
        }
        Err(error) => {
            let typed = if ListKind::from_slug(&step).is_some() {
                form.get("texte")
            } else {
                form.get("valeur")
            };
            question_page(
                &csrf,
                &step,
                Some(error),
                typed.chars().take(4000).collect(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_are_read_in_french_and_bounded() {
        assert_eq!(Measure::Height.parse("1,72"), Ok(172.0));
        assert_eq!(Measure::Height.parse(" 1.8 "), Ok(180.0));
        assert!(Measure::Height.parse("172").is_err());
        assert!(Measure::Height.parse("NaN").is_err());
        assert_eq!(Measure::Weight.parse("68,54"), Ok(68.5));
        assert!(Measure::Weight.parse("-3").is_err());
        assert!(Measure::Weight.parse("inf").is_err());
        let stored = Measure::Height.observation("p", 172.0);
        assert_eq!(Measure::Height.shown(&stored).as_deref(), Some("1,72 m"));
        let stored = Measure::Weight.observation("p", 68.5);
        assert_eq!(Measure::Weight.shown(&stored).as_deref(), Some("68,5 kg"));
    }

    #[test]
    fn list_answers_are_bounded() {
        assert_eq!(
            lines(" Asthme \n\n Diabète").unwrap(),
            vec!["Asthme", "Diabète"]
        );
        assert!(lines(&"a\n".repeat(MAX_LINES + 1)).is_err());
        assert!(lines(&"é".repeat(MAX_LINE_CHARS + 1)).is_err());
    }
}
