//! The audit stage: one record per interaction, for success, refusal and error alike.
//! Records go to the `audit` tracing target; they never carry tokens or resource
//! contents, only who did what to which resource, the outcome and the deciding rule.

use crate::access::Principal;

/// What the pipeline knows of an interaction once it has been answered.
#[derive(Debug)]
pub struct AuditRecord<'a> {
    pub request_id: &'a str,
    pub principal: Option<&'a Principal>,
    /// Interaction code (`read`, `search-type`, `transaction`, …).
    pub interaction: &'a str,
    pub resource_type: Option<&'a str>,
    pub resource_id: Option<&'a str>,
    pub status: u16,
    /// Rule that decided a refusal, if any.
    pub rule: Option<&'a str>,
}

/// Writes the record.
pub fn record(entry: &AuditRecord<'_>) {
    let (actor, subject, purpose) = match entry.principal {
        Some(principal) => (
            principal.actor.code().to_owned(),
            principal.subject.as_str(),
            principal.purpose_of_use.code(),
        ),
        None => ("anonymous".to_owned(), "", "normal"),
    };
    tracing::info!(
        target: "audit",
        request_id = entry.request_id,
        actor = %actor,
        subject,
        purpose_of_use = purpose,
        interaction = entry.interaction,
        resource_type = entry.resource_type.unwrap_or(""),
        resource_id = entry.resource_id.unwrap_or(""),
        status = entry.status,
        rule = entry.rule.unwrap_or(""),
        "access"
    );
}
