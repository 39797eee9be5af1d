//! Who is calling, as established by authentication (SPEC §2).

/// The actor kinds of SPEC §2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActorKind {
    Patient,
    Representative,
    Professional,
    System,
    /// Any other value of the `actor` claim: no access to health data (R-ACC-12).
    Other(String),
}

impl ActorKind {
    pub fn parse(claim: &str) -> ActorKind {
        match claim {
            "patient" => ActorKind::Patient,
            "representative" => ActorKind::Representative,
            "professional" => ActorKind::Professional,
            "system" => ActorKind::System,
            other => ActorKind::Other(other.to_owned()),
        }
    }

    pub fn code(&self) -> &str {
        match self {
            ActorKind::Patient => "patient",
            ActorKind::Representative => "representative",
            ActorKind::Professional => "professional",
            ActorKind::System => "system",
            ActorKind::Other(other) => other,
        }
    }
}

/// Access mode (TRE_R248-ModeAcces).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PurposeOfUse {
    Normal,
    BrisDeGlace,
    Centre15,
}

impl PurposeOfUse {
    pub fn parse(claim: &str) -> Option<PurposeOfUse> {
        match claim {
            "normal" => Some(PurposeOfUse::Normal),
            "bris_de_glace" => Some(PurposeOfUse::BrisDeGlace),
            "centre_15" => Some(PurposeOfUse::Centre15),
            _ => None,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            PurposeOfUse::Normal => "normal",
            PurposeOfUse::BrisDeGlace => "bris_de_glace",
            PurposeOfUse::Centre15 => "centre_15",
        }
    }
}

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub actor: ActorKind,
    /// `sub`: the IdNat_PS of a professional, the client id of a system, the user id
    /// of a patient or representative.
    pub subject: String,
    pub issuer: String,
    /// For a patient or representative: the Patient id of the space.
    pub patient: Option<String>,
    /// TRE_G15 profession code.
    pub profession: Option<String>,
    /// TRE_R38 specialty code.
    pub specialty: Option<String>,
    /// FINESS or structure id.
    pub organization: Option<String>,
    pub name: Option<String>,
    /// SMART scopes, as granted: `None` when the token has no `scope` claim (not
    /// narrowed); a claim that names nothing (`""`) grants nothing (R-ACC-13).
    pub scopes: Option<Vec<String>>,
    pub purpose_of_use: PurposeOfUse,
    pub access_reason: Option<String>,
    /// The OAuth client (`client_id` or `azp`), when the token names it.
    pub client_id: Option<String>,
    /// For a token this server issued (R-ACT-4): the sign-in session or the app's
    /// authorisation it was issued under, which must still stand for it to be
    /// accepted (sign-out and revocation end its tokens at once).
    pub standing: Option<Standing>,
}

/// What a token of this server's own stands on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// A holder's sign-in session (`sid` claim): its id.
    Session(String),
    /// An app the holder authorised (`grant` claim): the grant's id.
    AppGrant(String),
}

impl Principal {
    /// The patient whose space a patient or representative acts on.
    pub fn own_patient(&self) -> Option<&str> {
        match self.actor {
            ActorKind::Patient | ActorKind::Representative => self.patient.as_deref(),
            _ => None,
        }
    }
}
