//! The rules an identifiant and a password must follow (R-ACT-2), each named, so
//! that a refusal says which rule failed and the pages can show them all before
//! anything is typed.

/// One rule, with what the person reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Stable code, in answers (`identifiant-min-length`…).
    pub code: &'static str,
    /// The rule as shown, in French.
    pub text: &'static str,
}

pub const IDENTIFIANT_MIN_LENGTH: Rule = Rule {
    code: "identifiant-min-length",
    text: "L'identifiant contient au moins 8 caractères.",
};
pub const IDENTIFIANT_NO_CAPITAL: Rule = Rule {
    code: "identifiant-no-capital",
    text: "L'identifiant ne contient pas de majuscule.",
};
pub const IDENTIFIANT_NO_SPACE: Rule = Rule {
    code: "identifiant-no-space",
    text: "L'identifiant ne contient pas d'espace.",
};
pub const IDENTIFIANT_NOT_EMAIL: Rule = Rule {
    code: "identifiant-not-email",
    text: "L'identifiant n'est pas une adresse e-mail.",
};
pub const IDENTIFIANT_CHARACTERS: Rule = Rule {
    code: "identifiant-characters",
    text: "L'identifiant ne contient que des lettres sans accent, des chiffres et les signes « . », « _ » et « - ».",
};
pub const IDENTIFIANT_MAX_LENGTH: Rule = Rule {
    code: "identifiant-max-length",
    text: "L'identifiant contient au plus 64 caractères.",
};
pub const PASSWORD_MIN_LENGTH: Rule = Rule {
    code: "password-min-length",
    text: "Le mot de passe contient au moins 8 caractères.",
};
pub const PASSWORD_CAPITAL: Rule = Rule {
    code: "password-capital",
    text: "Le mot de passe contient au moins une majuscule.",
};
pub const PASSWORD_SMALL_LETTER: Rule = Rule {
    code: "password-small-letter",
    text: "Le mot de passe contient au moins une minuscule.",
};
pub const PASSWORD_DIGIT: Rule = Rule {
    code: "password-digit",
    text: "Le mot de passe contient au moins un chiffre.",
};
pub const PASSWORD_SPECIAL: Rule = Rule {
    code: "password-special",
    text: "Le mot de passe contient au moins un caractère spécial (ni lettre ni chiffre).",
};
pub const PASSWORD_MAX_LENGTH: Rule = Rule {
    code: "password-max-length",
    text: "Le mot de passe contient au plus 128 caractères.",
};
pub const PASSWORD_CONFIRMED: Rule = Rule {
    code: "password-confirmed",
    text: "Les deux mots de passe saisis sont identiques.",
};

/// Every rule of the identifiant, in the order shown.
pub const IDENTIFIANT_RULES: [Rule; 6] = [
    IDENTIFIANT_MIN_LENGTH,
    IDENTIFIANT_NO_CAPITAL,
    IDENTIFIANT_NO_SPACE,
    IDENTIFIANT_NOT_EMAIL,
    IDENTIFIANT_CHARACTERS,
    IDENTIFIANT_MAX_LENGTH,
];

/// Every rule of the password, in the order shown.
pub const PASSWORD_RULES: [Rule; 7] = [
    PASSWORD_MIN_LENGTH,
    PASSWORD_CAPITAL,
    PASSWORD_SMALL_LETTER,
    PASSWORD_DIGIT,
    PASSWORD_SPECIAL,
    PASSWORD_MAX_LENGTH,
    PASSWORD_CONFIRMED,
];

/// The rules `identifiant` breaks (none: it may be chosen). Characters are counted,
/// not bytes.
pub fn identifiant_breaks(identifiant: &str) -> Vec<Rule> {
    let mut broken = Vec::new();
    let length = identifiant.chars().count();
    if length < 8 {
        broken.push(IDENTIFIANT_MIN_LENGTH);
    }
    if identifiant.chars().any(char::is_uppercase) {
        broken.push(IDENTIFIANT_NO_CAPITAL);
    }
    if identifiant.chars().any(char::is_whitespace) {
        broken.push(IDENTIFIANT_NO_SPACE);
    }
    if looks_like_email(identifiant) {
        broken.push(IDENTIFIANT_NOT_EMAIL);
    }
    // Shown in pages, written in the trace and compared as typed: a plain set of
    // characters (no look-alike letters of other scripts, no invisible ones). The
    // characters the rules above name are not counted twice.
    let other = identifiant.chars().any(|c| {
        let named_above = c.is_uppercase()
            || c.is_whitespace()
            || (c == '@' && broken.contains(&IDENTIFIANT_NOT_EMAIL));
        let plain = c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-');
        !plain && !named_above
    });
    if other {
        broken.push(IDENTIFIANT_CHARACTERS);
    }
    if length > 64 {
        broken.push(IDENTIFIANT_MAX_LENGTH);
    }
    broken
}

/// An address with an `@` between something and a dotted domain.
fn looks_like_email(text: &str) -> bool {
    match text.split_once('@') {
        Some((local, domain)) => !local.is_empty() && domain.contains('.'),
        None => false,
    }
}

/// The rules `password` (typed twice: `confirmation`) breaks.
pub fn password_breaks(password: &str, confirmation: &str) -> Vec<Rule> {
    let mut broken = Vec::new();
    let length = password.chars().count();
    if length < 8 {
        broken.push(PASSWORD_MIN_LENGTH);
    }
    if !password.chars().any(char::is_uppercase) {
        broken.push(PASSWORD_CAPITAL);
    }
    if !password.chars().any(char::is_lowercase) {
        broken.push(PASSWORD_SMALL_LETTER);
    }
    if !password.chars().any(|c| c.is_ascii_digit()) {
        broken.push(PASSWORD_DIGIT);
    }
    if !password
        .chars()
        .any(|c| !c.is_alphanumeric() && !c.is_whitespace() && !c.is_control())
    {
        broken.push(PASSWORD_SPECIAL);
    }
    if length > 128 {
        broken.push(PASSWORD_MAX_LENGTH);
    }
    if password != confirmation {
        broken.push(PASSWORD_CONFIRMED);
    }
    broken
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(rules: Vec<Rule>) -> Vec<&'static str> {
        rules.into_iter().map(|rule| rule.code).collect()
    }

    #[test]
    fn an_identifiant_is_refused_for_each_rule_it_breaks() {
        assert!(identifiant_breaks("jean.dupont").is_empty());
        assert!(identifiant_breaks("jean_dupont-75").is_empty());
        assert_eq!(
            codes(identifiant_breaks("jean")),
            ["identifiant-min-length"]
        );
        assert_eq!(
            codes(identifiant_breaks("Jean.Dupont")),
            ["identifiant-no-capital"]
        );
        assert_eq!(
            codes(identifiant_breaks("jean dupont")),
            ["identifiant-no-space"]
        );
        assert_eq!(
            codes(identifiant_breaks("jean@exemple.fr")),
            ["identifiant-not-email"]
        );
        assert_eq!(
            codes(identifiant_breaks(&"a".repeat(65))),
            ["identifiant-max-length"]
        );
        assert_eq!(
            codes(identifiant_breaks("jéan.dupont")),
            ["identifiant-characters"]
        );
        assert_eq!(
            codes(identifiant_breaks("jean@dupont")),
            ["identifiant-characters"]
        );
        assert_eq!(
            codes(identifiant_breaks("jean\u{200b}dupont")),
            ["identifiant-characters"]
        );
        assert_eq!(
            codes(identifiant_breaks("J D")),
            [
                "identifiant-min-length",
                "identifiant-no-capital",
                "identifiant-no-space"
            ]
        );
    }

    #[test]
    fn a_password_is_refused_for_each_rule_it_breaks() {
        let ok = "Motdepasse1!";
        assert!(password_breaks(ok, ok).is_empty());
        assert_eq!(
            codes(password_breaks("Md1!", "Md1!")),
            ["password-min-length"]
        );
        assert_eq!(
            codes(password_breaks("motdepasse1!", "motdepasse1!")),
            ["password-capital"]
        );
        assert_eq!(
            codes(password_breaks("MOTDEPASSE1!", "MOTDEPASSE1!")),
            ["password-small-letter"]
        );
        assert_eq!(
            codes(password_breaks("Motdepasse!", "Motdepasse!")),
            ["password-digit"]
        );
        assert_eq!(
            codes(password_breaks("Motdepasse1", "Motdepasse1")),
            ["password-special"]
        );
        let long = format!("Aa1!{}", "x".repeat(125));
        assert_eq!(
            codes(password_breaks(&long, &long)),
            ["password-max-length"]
        );
        assert_eq!(
            codes(password_breaks(ok, "Motdepasse2!")),
            ["password-confirmed"]
        );
    }
}
