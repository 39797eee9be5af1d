//! R-ACC-13: SMART scopes narrow, never widen. The effective right is what the rules
//! allow and a scope grants. SMART v2 (`patient/DocumentReference.rs`) and v1
//! (`user/*.read`, `.write`, `.*`) forms are read. A token without a `scope` claim is
//! not narrowed (identity providers of professionals and of the patient portal need
//! not speak SMART); a token with a `scope` claim gets nothing it does not grant, an
//! empty one nothing at all.

use crate::access::decide::Verdict;
use crate::access::principal::Principal;
use crate::fhir::definitions::Interaction;

/// The SMART v2 permission letter an interaction needs.
fn permission(interaction: Interaction) -> char {
    match interaction {
        Interaction::Create => 'c',
        Interaction::Read
        | Interaction::Vread
        | Interaction::HistoryInstance
        | Interaction::HistoryType => 'r',
        // An operation changes the instance it runs on.
        Interaction::Update | Interaction::Patch | Interaction::Operation => 'u',
        Interaction::Delete => 'd',
        Interaction::SearchType => 's',
    }
}

/// Whether one scope grants `letter` on `resource_type`.
fn grants(scope: &str, resource_type: &str, letter: char) -> bool {
    let Some((context, rest)) = scope.split_once('/') else {
        return false;
    };
    if !matches!(context, "patient" | "user" | "system") {
        return false;
    }
    // A scope narrowed by a query (`?category=…`) is not understood here: it grants
    // nothing rather than more than it says.
    if rest.contains('?') {
        return false;
    }
    let Some((resource, permissions)) = rest.split_once('.') else {
        return false;
    };
    if resource != "*" && resource != resource_type {
        return false;
    }
    match permissions {
        "read" => matches!(letter, 'r' | 's'),
        "write" => matches!(letter, 'c' | 'u' | 'd'),
        "*" => true,
        v2 => is_v2_permissions(v2) && v2.contains(letter),
    }
}

/// `cruds` letters in that order, each at most once.
fn is_v2_permissions(text: &str) -> bool {
    let mut last = None;
    for letter in text.chars() {
        let Some(position) = "cruds".find(letter) else {
            return false;
        };
        if last.is_some_and(|previous| position <= previous) {
            return false;
        }
        last = Some(position);
    }
    !text.is_empty()
}

/// R-ACC-13 for one interaction.
pub fn r_acc_13_scopes(
    principal: &Principal,
    resource_type: &str,
    interaction: Interaction,
) -> Option<Verdict> {
    let scopes = principal.scopes.as_ref()?;
    let letter = permission(interaction);
    let granted = scopes
        .iter()
        .any(|scope| grants(scope, resource_type, letter));
    (!granted).then(|| {
        Verdict::deny(
            "R-ACC-13",
            format!(
                "the token's scopes do not grant {} on {resource_type}",
                interaction.code()
            ),
        )
    })
}

/// R-ACC-13 for a body leaving the server, whatever the interaction that carries
/// it (a read, a search match, an `_include`d or `_revinclude`d row): the scopes
/// must read (`r`) or search (`s`) its type.
pub fn r_acc_13_reads(principal: &Principal, resource_type: &str) -> Option<Verdict> {
    let scopes = principal.scopes.as_ref()?;
    let granted = scopes
        .iter()
        .any(|scope| grants(scope, resource_type, 'r') || grants(scope, resource_type, 's'));
    (!granted).then(|| {
        Verdict::deny(
            "R-ACC-13",
            format!("the token's scopes do not read {resource_type}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_and_v1_forms() {
        assert!(grants(
            "patient/DocumentReference.rs",
            "DocumentReference",
            'r'
        ));
        assert!(grants(
            "patient/DocumentReference.rs",
            "DocumentReference",
            's'
        ));
        assert!(!grants(
            "patient/DocumentReference.rs",
            "DocumentReference",
            'c'
        ));
        assert!(!grants("patient/DocumentReference.rs", "Consent", 'r'));
        assert!(grants("user/*.read", "Consent", 's'));
        assert!(!grants("user/*.read", "Consent", 'd'));
        assert!(grants("system/Binary.write", "Binary", 'c'));
        assert!(grants("user/*.*", "Patient", 'u'));
        assert!(grants("system/Patient.cruds", "Patient", 'u'));
    }

    #[test]
    fn malformed_or_query_scopes_grant_nothing() {
        for scope in [
            "openid",
            "launch/patient",
            "patient/DocumentReference.sr",
            "patient/DocumentReference.rr",
            "patient/Observation.rs?category=laboratory",
            "other/Patient.r",
            "patient/DocumentReference",
        ] {
            for letter in "cruds".chars() {
                assert!(
                    !grants(scope, "DocumentReference", letter),
                    "{scope} {letter}"
                );
                assert!(!grants(scope, "Observation", letter), "{scope} {letter}");
            }
        }
    }
}
