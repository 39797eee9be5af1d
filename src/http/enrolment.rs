//! The first sign-in in the browser (R-ACT-1, R-ACT-2): ask for a provisional
//! code; NIR, birth date and code; the contacts confirmed; the identifiant and
//! password chosen, every rule shown before typing; then activate the space, or
//! oppose it (confirmed, the PDF proof downloaded) through the FHIR API as the
//! newly signed-in holder (`internal`). The same steps as `/account/…`, with the
//! pages' defences (`pages`).

use actix_web::http::{Method, StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;

use super::pages::{
    Csrf, account_step, csrf_of, message, page, render, session, status_of, submitted,
    with_retry_after, with_session_cookie,
};
use crate::AppState;
use crate::account::{CodeAsk, Contacts, Credentials, FirstSignIn, rules};
use crate::service::Operation;

type State = web::Data<AppState>;

#[derive(Template)]
#[template(path = "provisional.html")]
struct ProvisionalPage<'a> {
    csrf: &'a str,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "first_sign_in.html")]
struct FirstSignInPage<'a> {
    csrf: &'a str,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "contacts.html")]
struct ContactsPage<'a> {
    csrf: &'a str,
    ticket: &'a str,
    email: &'a str,
    mobile: &'a str,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "credentials.html")]
struct CredentialsPage<'a> {
    csrf: &'a str,
    ticket: &'a str,
    identifiant: &'a str,
    identifiant_rules: Vec<&'static str>,
    password_rules: Vec<&'static str>,
    errors: Vec<String>,
}

#[derive(Template)]
#[template(path = "choice.html")]
struct ChoicePage<'a> {
    csrf: &'a str,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "oppose_confirm.html")]
struct OpposeConfirmPage<'a> {
    csrf: &'a str,
}

fn credentials_page(
    csrf: &Csrf,
    status: StatusCode,
    ticket: &str,
    identifiant: &str,
    errors: Vec<String>,
) -> HttpResponse {
    page(
        status,
        render(&CredentialsPage {
            csrf: &csrf.value,
            ticket,
            identifiant,
            identifiant_rules: rules::IDENTIFIANT_RULES
                .iter()
                .map(|rule| rule.text)
                .collect(),
            password_rules: rules::PASSWORD_RULES.iter().map(|rule| rule.text).collect(),
            errors,
        }),
        csrf,
        None,
    )
}

fn choice_page(csrf: &Csrf, status: StatusCode, error: Option<String>) -> HttpResponse {
    page(
        status,
        render(&ChoicePage {
            csrf: &csrf.value,
            error,
        }),
        csrf,
        None,
    )
}

/// `GET /code-provisoire`.
pub async fn provisional_form(state: State, request: HttpRequest) -> HttpResponse {
    let csrf = csrf_of(&state, &request);
    page(
        StatusCode::OK,
        render(&ProvisionalPage {
            csrf: &csrf.value,
            error: None,
        }),
        &csrf,
        None,
    )
}

/// `POST /code-provisoire` (R-ACT-1): the same page whether the NIR names a space.
pub async fn provisional(
    state: State,
    request: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let (csrf, form) = match submitted(&state, &request, payload).await {
        Ok(submitted) => submitted,
        Err(response) => return response,
    };
    let serial = form.get("vitale_serial").trim().to_owned();
    let ask = CodeAsk {
        nir: form.get("nir").to_owned(),
        birth_date: form.get("birth_date").to_owned(),
        vitale_serial: (!serial.is_empty()).then_some(serial),
        channel: form.get("channel").to_owned(),
    };
    match account_step(&state, &request, move |accounts, caller| {
        accounts.ask_provisional_code(caller, ask)
    })
    .await
    {
        Ok(_) => message(
            StatusCode::OK,
            &csrf,
            "Demande enregistrée",
            "Si ces informations correspondent à un espace Mon espace santé, un code provisoire vient d'être envoyé à l'adresse ou au numéro choisi. Il est valable 3 jours.",
            Some((
                "/premiere-connexion",
                "J'ai reçu mon code : j'active Mon espace santé",
            )),
        ),
        Err(error) => with_retry_after(
            error.retry_after,
            page(
                status_of(&error),
                render(&ProvisionalPage {
                    csrf: &csrf.value,
                    error: Some(error.message),
                }),
                &csrf,
                None,
            ),
        ),
    }
}

/// `GET /premiere-connexion`.
pub async fn first_sign_in_form(state: State, request: HttpRequest) -> HttpResponse {
    let csrf = csrf_of(&state, &request);
    page(
        StatusCode::OK,
        render(&FirstSignInPage {
            csrf: &csrf.value,
            error: None,
        }),
        &csrf,
        None,
    )
}

/// `POST /premiere-connexion` (R-ACT-2): the code checked, the contacts follow.
pub async fn first_sign_in(
    state: State,
    request: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let (csrf, form) = match submitted(&state, &request, payload).await {
        Ok(submitted) => submitted,
        Err(response) => return response,
    };
    let ask = FirstSignIn {
        nir: form.get("nir").to_owned(),
        birth_date: form.get("birth_date").to_owned(),
        code: form.get("code").to_owned(),
    };
    match account_step(&state, &request, move |accounts, caller| {
        accounts.first_sign_in(caller, ask)
    })
    .await
    {
        Ok(enrolment) => page(
            StatusCode::OK,
            render(&ContactsPage {
                csrf: &csrf.value,
                ticket: &enrolment.ticket,
                email: &enrolment.email,
                mobile: &enrolment.mobile,
                error: None,
            }),
            &csrf,
            None,
        ),
        Err(error) => with_retry_after(
            error.retry_after,
            page(
                status_of(&error),
                render(&FirstSignInPage {
                    csrf: &csrf.value,
                    error: Some(error.message),
                }),
                &csrf,
                None,
            ),
        ),
    }
}

/// A ticket as a form carries it back: bounded, or nothing.
fn ticket_of(typed: &str) -> String {
    if typed.len() <= 256 {
        typed.to_owned()
    } else {
        String::new()
    }
}

/// `POST /premiere-connexion/coordonnees`.
pub async fn contacts(state: State, request: HttpRequest, payload: web::Payload) -> HttpResponse {
    let (csrf, form) = match submitted(&state, &request, payload).await {
        Ok(submitted) => submitted,
        Err(response) => return response,
    };
    let ticket = ticket_of(form.get("ticket"));
    let confirmed = Contacts {
        ticket: ticket.clone(),
        email: form.get("email").to_owned(),
        mobile: form.get("mobile").to_owned(),
        channel: form.get("channel").to_owned(),
    };
    match account_step(&state, &request, move |accounts, caller| {
        accounts.confirm_contacts(caller, confirmed)
    })
    .await
    {
        Ok(_) => credentials_page(&csrf, StatusCode::OK, &ticket, "", Vec::new()),
        Err(error) => {
            let email: String = form.get("email").chars().take(254).collect();
            let mobile: String = form.get("mobile").chars().take(32).collect();
            with_retry_after(
                error.retry_after,
                page(
                    status_of(&error),
                    render(&ContactsPage {
                        csrf: &csrf.value,
                        ticket: &ticket,
                        email: &email,
                        mobile: &mobile,
                        error: Some(error.message),
                    }),
                    &csrf,
                    None,
                ),
            )
        }
    }
}

/// `POST /premiere-connexion/identifiants`: signed in, the choice follows.
pub async fn credentials(
    state: State,
    request: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let (csrf, form) = match submitted(&state, &request, payload).await {
        Ok(submitted) => submitted,
        Err(response) => return response,
    };
    let ticket = ticket_of(form.get("ticket"));
    let identifiant: String = form.get("identifiant").chars().take(64).collect();
    let chosen = Credentials {
        ticket: ticket.clone(),
        identifiant: form.get("identifiant").to_owned(),
        password: form.get("password").to_owned(),
        password_confirmation: form.get("password_confirmation").to_owned(),
    };
    match account_step(&state, &request, move |accounts, caller| {
        accounts.choose_credentials(caller, chosen)
    })
    .await
    {
        Ok(signed_in) => {
            with_session_cookie(choice_page(&csrf, StatusCode::OK, None), &signed_in.session)
        }
        Err(error) => {
            let mut errors = vec![error.message.clone()];
            errors.extend(error.rules.iter().map(|(_, rule)| rule.text.to_owned()));
            with_retry_after(
                error.retry_after,
                credentials_page(&csrf, status_of(&error), &ticket, &identifiant, errors),
            )
        }
    }
}

/// `POST /premiere-connexion/choix`: activate, or oppose once confirmed (the
/// answer is then the PDF proof, as an attachment).
pub async fn choice(state: State, request: HttpRequest, payload: web::Payload) -> HttpResponse {
    let (csrf, form) = match submitted(&state, &request, payload).await {
        Ok(submitted) => submitted,
        Err(response) => return response,
    };
    let Some(session) = session(&state, &request).await else {
        return message(
            StatusCode::UNAUTHORIZED,
            &csrf,
            "Session terminée",
            "Votre session a pris fin. Connectez-vous pour faire votre choix.",
            Some(("/connexion", "Me connecter")),
        );
    };
    let decision = form.get("decision");
    let operation = match (decision, form.get("confirmed")) {
        ("activate", _) => "$activate",
        ("oppose", "yes") => "$oppose",
        ("oppose", _) => {
            return page(
                StatusCode::OK,
                render(&OpposeConfirmPage { csrf: &csrf.value }),
                &csrf,
                None,
            );
        }
        _ => return choice_page(&csrf, StatusCode::OK, None),
    };
    let token = state.accounts.access_token(&session).access_token;
    let patient = session.patient.clone();
    let path = format!("/Patient/{patient}/{operation}");
    let accept = if operation == "$oppose" {
        "application/pdf"
    } else {
        super::FHIR_JSON
    };
    let answer = super::internal::call_as(
        &state,
        &request,
        &token,
        Method::POST,
        &path,
        accept,
        |_| {
            super::handlers::resource_call(
                "Patient",
                Operation::Invoke {
                    id: patient,
                    name: operation.to_owned(),
                    params: Vec::new(),
                },
            )
        },
    )
    .await;
    if !answer.status().is_success() {
        return choice_page(
            &csrf,
            answer.status(),
            Some("Ce choix n'a pas pu être enregistré. Réessayez, ou contactez le 3422.".into()),
        );
    }
    if operation == "$activate" {
        return message(
            StatusCode::OK,
            &csrf,
            "Votre profil a bien été activé !",
            "Bienvenue sur Mon espace santé. Vous avez la main sur votre santé. Cinq questions vont maintenant vous être posées pour commencer votre profil médical (taille, poids, maladies, traitements, allergies) ; chacune peut être passée.",
            Some((
                "/espace/profil/questions/taille",
                "Commencer mon profil médical",
            )),
        );
    }
    let pdf = match actix_web::body::to_bytes(answer.into_body()).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return choice_page(
                &csrf,
                StatusCode::INTERNAL_SERVER_ERROR,
                Some("Le justificatif n'a pas pu être produit.".into()),
            );
        }
    };
    HttpResponse::Ok()
        .content_type("application/pdf")
        .insert_header((
            header::CONTENT_DISPOSITION,
            "attachment; filename=\"justificatif-opposition.pdf\"",
        ))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(pdf)
}
