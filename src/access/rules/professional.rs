//! Rules for professionals (SPEC §5), in SPEC order. Each function is named by the
//! rule it implements and refuses with a [`Verdict`] naming it.

use chrono::{DateTime, Utc};

use crate::access::decide::Verdict;
use crate::access::matrix::{DocumentType, Matrix, TypeAccess};
use crate::access::principal::{Principal, PurposeOfUse};
use crate::access::space::{PURPOSE_BTG, PURPOSE_ETREAT, PURPOSE_MASKED, SpaceFacts};
use crate::lifecycle::State;

/// TRE_G15 code of the médecin.
const MEDECIN: &str = "10";

/// The security label that masks a document from professionals (TRE_A07).
pub const MASQUE_PS: &str = "MASQUE_PS";

/// How a professional may act on a space, once R-ACC-2 to R-ACC-5 have passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Authorised (R-ACC-3): the médecin traitant or named by a permit Consent.
    Authorised { general_practitioner: bool },
    /// Emergency access (R-ACC-4).
    BrisDeGlace,
    /// SAMU regulation (R-ACC-5).
    Centre15,
}

/// The professional's access to one space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpaceAccess {
    pub mode: Mode,
    /// R-ACC-7: masked documents are shown (médecin traitant, or an emergency mode
    /// the patient opened to masked documents).
    pub sees_masked: bool,
}

/// R-ACC-1: a closed or opposed space is refused to professionals, whatever the
/// mode (emergency included), for reading and for feeding.
pub fn r_acc_1_space_state(facts: &SpaceFacts, now: DateTime<Utc>) -> Option<Verdict> {
    match facts.state_at(now) {
        State::Closed => Some(Verdict::deny("R-ACC-1", "the patient's space is closed")),
        State::Opposed => Some(Verdict::deny(
            "R-ACC-1",
            "the patient opposed the opening of their space",
        )),
        State::Pending | State::Active => None,
    }
}

/// R-ACC-2: a professional (or organisation) the patient blocked is refused
/// everything, in every mode; the médecin traitant cannot be blocked.
pub fn r_acc_2_blocked(principal: &Principal, facts: &SpaceFacts) -> Option<Verdict> {
    let blocked = !facts.is_general_practitioner(&principal.subject)
        && facts.names(
            false,
            None,
            &principal.subject,
            principal.organization.as_deref(),
        );
    blocked.then(|| {
        Verdict::deny(
            "R-ACC-2",
            "the patient has blocked access to their space for this professional or organisation",
        )
    })
}

/// R-ACC-3: the médecin traitant, or a professional named by an active permit Consent.
pub fn r_acc_3_authorised(principal: &Principal, facts: &SpaceFacts) -> Option<Mode> {
    let general_practitioner = facts.is_general_practitioner(&principal.subject);
    (general_practitioner
        || facts.names(
            true,
            None,
            &principal.subject,
            principal.organization.as_deref(),
        ))
    .then_some(Mode::Authorised {
        general_practitioner,
    })
}

/// R-ACC-4: `bris_de_glace` with a reason, unless the patient opposed it (deny BTG).
pub fn r_acc_4_bris_de_glace(principal: &Principal, facts: &SpaceFacts) -> Result<Mode, Verdict> {
    if principal.access_reason.is_none() {
        return Err(Verdict::deny(
            "R-ACC-4",
            "emergency access (bris_de_glace) needs a non-empty access_reason",
        ));
    }
    if facts.setting(false, PURPOSE_BTG) {
        return Err(Verdict::deny(
            "R-ACC-4",
            "the patient has opposed emergency access (bris de glace) to their space",
        ));
    }
    Ok(Mode::BrisDeGlace)
}

/// R-ACC-5: `centre_15`, for the SAMU regulating physician (a médecin, TRE_G15 code
/// 10), unless the patient opposed it (deny ETREAT).
pub fn r_acc_5_centre_15(principal: &Principal, facts: &SpaceFacts) -> Result<Mode, Verdict> {
    if principal.profession.as_deref() != Some(MEDECIN) {
        return Err(Verdict::deny(
            "R-ACC-5",
            "centre_15 access is the SAMU regulating physician's: a médecin (profession 10)",
        ));
    }
    if facts.setting(false, PURPOSE_ETREAT) {
        return Err(Verdict::deny(
            "R-ACC-5",
            "the patient has opposed access by the SAMU regulation (centre 15) to their space",
        ));
    }
    Ok(Mode::Centre15)
}

/// R-ACC-1 to R-ACC-5 in order: may this professional read the space, and how.
pub fn space_access(
    principal: &Principal,
    facts: &SpaceFacts,
    now: DateTime<Utc>,
) -> Result<SpaceAccess, Verdict> {
    if let Some(refusal) = r_acc_1_space_state(facts, now) {
        return Err(refusal);
    }
    if let Some(refusal) = r_acc_2_blocked(principal, facts) {
        return Err(refusal);
    }
    let mode = match r_acc_3_authorised(principal, facts) {
        Some(mode) => mode,
        None => match principal.purpose_of_use {
            PurposeOfUse::BrisDeGlace => r_acc_4_bris_de_glace(principal, facts)?,
            PurposeOfUse::Centre15 => r_acc_5_centre_15(principal, facts)?,
            PurposeOfUse::Normal => {
                return Err(Verdict::deny(
                    "R-ACC-3",
                    "authorisation missing: this professional is not authorised on this space; declare the patient's consent by creating a permit Consent naming you (IdNat_PS)",
                ));
            }
        },
    };
    let sees_masked = match mode {
        Mode::Authorised {
            general_practitioner,
        } => general_practitioner,
        Mode::BrisDeGlace | Mode::Centre15 => facts.setting(true, PURPOSE_MASKED),
    };
    Ok(SpaceAccess { mode, sees_masked })
}

/// R-ACC-6: the document types the professional's profession (and specialty) may read;
/// a profession the matrix does not name reads none (R-ACC-12).
pub fn r_acc_6_matrix<'m>(
    principal: &Principal,
    matrix: &'m Matrix,
) -> Result<&'m TypeAccess, Verdict> {
    let profession = principal.profession.as_deref().unwrap_or_default();
    matrix
        .access(profession, principal.specialty.as_deref())
        .ok_or_else(|| {
            Verdict::deny(
                "R-ACC-6",
                format!("profession {profession:?} is not in the habilitation matrix"),
            )
        })
}

/// R-ACC-12: a profession the habilitation matrix does not name reads no health
/// data, the medical profile included (whose entries no matrix row names).
pub fn r_acc_12_profession_named(principal: &Principal, matrix: &Matrix) -> Option<Verdict> {
    let profession = principal.profession.as_deref().unwrap_or_default();
    matrix
        .access(profession, principal.specialty.as_deref())
        .is_none()
        .then(|| {
            Verdict::deny(
                "R-ACC-12",
                format!("profession {profession:?} is not in the habilitation matrix: no access to health data"),
            )
        })
}

/// R-ACC-7: a masked document is shown only to its author, to the médecin traitant,
/// and in emergency modes the patient opened to masked documents.
pub fn r_acc_7_masked(
    principal: &Principal,
    access: &SpaceAccess,
    labels: &[String],
    depositor: Option<&str>,
) -> Option<Verdict> {
    let masked = labels.iter().any(|label| label == MASQUE_PS);
    let author = depositor == Some(principal.subject.as_str());
    (masked && !author && !access.sees_masked)
        .then(|| Verdict::deny("R-ACC-7", "the document is masked from professionals"))
}

/// R-ACC-6 then R-ACC-7 for one document.
pub fn document_visible(
    principal: &Principal,
    matrix: &Matrix,
    access: &SpaceAccess,
    types: &[DocumentType],
    labels: &[String],
    depositor: Option<&str>,
) -> Result<(), Verdict> {
    let allowed = r_acc_6_matrix(principal, matrix)?;
    if !allowed.allows(types) {
        return Err(Verdict::deny(
            "R-ACC-6",
            "the habilitation matrix does not open this document type to this profession",
        ));
    }
    match r_acc_7_masked(principal, access, labels, depositor) {
        Some(refusal) => Err(refusal),
        None => Ok(()),
    }
}

/// R-ACC-9: only the author changes or deletes a deposited document (same IdNat_PS,
/// or a system of the same organisation). A document whose depositor is not known is
/// changed by nobody.
pub fn r_acc_9_author_only(
    principal: &Principal,
    depositor: Option<&crate::store::Author>,
) -> Option<Verdict> {
    let allowed = depositor.is_some_and(|author| {
        let same_person =
            author.actor == principal.actor.code() && author.subject == principal.subject;
        let same_organisation = principal.actor == crate::access::ActorKind::System
            && author.actor == "system"
            && author.organization.is_some()
            && author.organization == principal.organization;
        same_person || same_organisation
    });
    (!allowed).then(|| {
        Verdict::deny(
            "R-ACC-9",
            "only the author of a deposited document may change or delete it",
        )
    })
}
