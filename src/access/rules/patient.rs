//! Rules for the patient and representatives (SPEC §6).

use crate::access::decide::Verdict;

pub const INVISIBLE_PATIENT: &str = "INVISIBLE_PATIENT";
pub const INVISIBLE_REPRESENTANTS_LEGAUX: &str = "INVISIBLE_REPRESENTANTS_LEGAUX";

/// R-PAT-1 / R-PAT-5: labels that hide a document from the holder or a representative
/// (INVISIBLE_PATIENT lapses one month after deposit: `deposited_at` against `now`).
pub fn r_pat_hidden(
    representative: bool,
    labels: &[String],
    deposited_at: Option<&str>,
    month_ago: &str,
) -> Option<Verdict> {
    let pending_announcement = labels.iter().any(|label| label == INVISIBLE_PATIENT)
        && deposited_at.is_none_or(|deposited| deposited > month_ago);
    if pending_announcement {
        return Some(Verdict::deny(
            "R-PAT-1",
            "the document awaits its announcement consultation",
        ));
    }
    if representative
        && labels
            .iter()
            .any(|label| label == INVISIBLE_REPRESENTANTS_LEGAUX)
    {
        return Some(Verdict::deny(
            "R-PAT-5",
            "the document is hidden from legal representatives",
        ));
    }
    None
}
