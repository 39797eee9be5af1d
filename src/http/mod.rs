//! actix only: routes, body reading, content negotiation, the pipeline and the
//! CapabilityStatement. Handlers never touch diesel.

pub mod account;
pub mod body;
pub mod capability;
pub mod cda;
pub mod enrolment;
pub mod handlers;
pub mod internal;
pub mod oauth;
pub mod pages;
pub mod pipeline;
pub mod portal;
pub mod portal_profile;
pub mod portal_settings;

use actix_web::guard::{self, GuardContext};
use actix_web::web;

/// The FHIR JSON media type of every response.
pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

/// Whether a two-segment path is an instance (`/{type}/{id}`): not a literal
/// segment (`_search`, `_history`: a FHIR id never starts with `_`) nor one of the
/// server's own definitions. The segments are read decoded, as the router matches
/// them (`%5Fsearch` is `_search`).
fn instance_path(context: &GuardContext<'_>) -> bool {
    let mut segments = context.head().uri.path().trim_start_matches('/').split('/');
    let (Some(type_name), Some(id)) = (segments.next(), segments.next()) else {
        return false;
    };
    let decoded = |segment: &str| {
        percent_encoding::percent_decode_str(segment)
            .decode_utf8_lossy()
            .into_owned()
    };
    decoded(type_name) != "OperationDefinition" && !decoded(id).starts_with('_')
}

/// Registers every route. Literal segments (`_history`, `_search`) are not taken
/// for an `{id}`, so that the router, not the handler, names the interaction. The
/// instance and type routes, which almost every request takes, come first: the
/// router tries each pattern in turn, a regular expression each.
pub fn routes(config: &mut web::ServiceConfig) {
    use handlers::*;
    config
        .service(
            web::resource("/metadata")
                .route(web::get().to(metadata))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/.well-known/jwks.json")
                .route(web::get().to(account::jwks))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/.well-known/smart-configuration")
                .route(web::get().to(oauth::smart_configuration))
                .default_service(web::to(method_not_allowed)),
        )
        .service(web::scope("/account").configure(account_routes))
        .configure(page_routes)
        .service(
            web::resource("/healthz")
                .route(web::get().to(healthz))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/")
                .route(web::post().to(bundle))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/{type}/{id}")
                .guard(guard::fn_guard(instance_path))
                .route(web::get().to(read))
                .route(web::put().to(update))
                .route(web::patch().to(patch))
                .route(web::delete().to(delete))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/{type}")
                .route(web::get().to(search_get))
                .route(web::post().to(create))
                .route(web::patch().to(conditional_patch))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/OperationDefinition/{id}")
                .route(web::get().to(operation_definition))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/{type}/_search")
                .route(web::post().to(search_post))
                .route(web::get().to(search_get))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/{type}/_history")
                .route(web::get().to(history_type))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/{type}/{id}/_history/{version}")
                .route(web::get().to(vread))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/{type}/{id}/_history")
                .route(web::get().to(history_instance))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/{type}/{id}/{operation}")
                .route(web::post().to(operation))
                .default_service(web::to(method_not_allowed)),
        );
}

/// The accounts' JSON API (R-ACT-1 … 3).
fn account_routes(config: &mut web::ServiceConfig) {
    fn post<F, Args>(path: &str, handler: F) -> actix_web::Resource
    where
        F: actix_web::Handler<Args>,
        Args: actix_web::FromRequest + 'static,
        F::Output: actix_web::Responder + 'static,
    {
        web::resource(path)
            .route(web::post().to(handler))
            .default_service(web::to(handlers::method_not_allowed))
    }
    config
        .service(post("/provisional-code", account::provisional_code))
        .service(post("/first-sign-in", account::first_sign_in))
        .service(post("/contacts", account::contacts))
        .service(post("/credentials", account::credentials))
        .service(post("/sign-in", account::sign_in))
        .service(post("/sign-in/code", account::sign_in_code))
        .service(post("/token", account::token))
        .service(post("/sign-out", account::sign_out))
        .service(post("/password", account::password))
        .service(
            web::resource("/rules")
                .route(web::get().to(account::rules))
                .default_service(web::to(handlers::method_not_allowed)),
        );
}

/// The holder's pages and SMART's endpoints (R-ACT-2 … 4).
fn page_routes(config: &mut web::ServiceConfig) {
    use handlers::method_not_allowed;
    config
        .service(
            web::resource("/connexion")
                .route(web::get().to(pages::sign_in_form))
                .route(web::post().to(pages::sign_in))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/connexion/code")
                .route(web::post().to(pages::sign_in_code))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/deconnexion")
                .route(web::post().to(pages::sign_out))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/compte")
                .route(web::get().to(pages::account))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/compte/applications/retirer")
                .route(web::post().to(pages::revoke_app))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/compte/mot-de-passe")
                .route(web::get().to(pages::password_form))
                .route(web::post().to(pages::password))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/oauth/authorize")
                .route(web::get().to(pages::authorize))
                .route(web::post().to(pages::authorize_decision))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/oauth/token")
                .route(web::post().to(oauth::token))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/oauth/revoke")
                .route(web::post().to(oauth::revoke))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/code-provisoire")
                .route(web::get().to(enrolment::provisional_form))
                .route(web::post().to(enrolment::provisional))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/premiere-connexion")
                .route(web::get().to(enrolment::first_sign_in_form))
                .route(web::post().to(enrolment::first_sign_in))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/premiere-connexion/coordonnees")
                .route(web::post().to(enrolment::contacts))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/premiere-connexion/identifiants")
                .route(web::post().to(enrolment::credentials))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/premiere-connexion/choix")
                .route(web::post().to(enrolment::choice))
                .default_service(web::to(method_not_allowed)),
        )
        // One scope: its static prefix is one comparison for every other request,
        // where its routes with parameters are a regular expression each.
        .service(
            web::scope("/espace")
                .configure(portal_routes)
                .default_service(web::to(portal::not_found)),
        )
        .service(
            web::resource("/static/site.css")
                .route(web::get().to(pages::stylesheet))
                .default_service(web::to(method_not_allowed)),
        );
}

/// The portal's pages under `/espace` (R-UI-1).
fn portal_routes(config: &mut web::ServiceConfig) {
    use handlers::method_not_allowed;
    config
        .service(
            web::resource("")
                .route(web::get().to(portal::home))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/documents")
                .route(web::get().to(portal::documents))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/documents/ajouter")
                .route(web::get().to(portal::add_form))
                .route(web::post().to(portal::add))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/documents/{id}")
                .route(web::get().to(portal::document))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/documents/{id}/contenu")
                .route(web::get().to(portal::content))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/documents/{id}/lecture")
                .route(web::get().to(portal::reading))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/documents/{id}/{action}")
                .route(web::post().to(portal::document_post))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/messages")
                .route(web::get().to(portal_settings::messages))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/messages/{id}/{action}")
                .route(web::post().to(portal_settings::message_post))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/confidentialite")
                .route(web::get().to(portal_settings::privacy))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/confidentialite/{action}")
                .route(web::post().to(portal_settings::privacy_post))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/mon-espace")
                .route(web::get().to(portal_settings::my_space))
                .route(web::post().to(portal_settings::my_space_post))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/profil")
                .route(web::get().to(portal_profile::profile))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/profil/questions/{step}")
                .route(web::get().to(portal_profile::question))
                .route(web::post().to(portal_profile::answer))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/profil/{action}")
                .route(web::post().to(portal_profile::profile_post))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/historique")
                .route(web::get().to(portal::history))
                .default_service(web::to(method_not_allowed)),
        );
}
