//! Parsing of search requests (FHIR R4 §3.1.1) against the parameter table, into a
//! typed [`SearchRequest`] that the store compiles to SQL. Unknown parameters are an
//! error with `Prefer: handling=strict` and are dropped (and left out of the `self`
//! link) otherwise.

use actix_web::http::StatusCode;

use super::date::{DateRange, parse_range};
use super::definitions::{self, ParamKind, ResourceDef, SearchParamDef};
use super::extract::parse_reference;
use crate::error::{ApiError, IssueCode};

/// Date comparison prefixes supported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
}

/// How a token's system is matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SystemMatch {
    /// `code`: any system.
    Any,
    /// `|code`: no system.
    Absent,
    /// `system|code` or `system|`.
    Is(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenValue {
    pub system: SystemMatch,
    /// `None` for `system|` (any code in the system).
    pub code: Option<String>,
}

/// String matching mode (default: starts with, ignoring case and accents).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StringMode {
    StartsWith,
    Exact,
    Contains,
}

/// One search criterion: the values inside are OR-ed, criteria are AND-ed.
#[derive(Debug, Clone)]
pub enum Criterion {
    Id(Vec<String>),
    LastUpdated(Vec<(Prefix, DateRange)>),
    Token {
        param: &'static str,
        values: Vec<TokenValue>,
        negated: bool,
    },
    String {
        param: &'static str,
        mode: StringMode,
        values: Vec<String>,
    },
    Date {
        param: &'static str,
        values: Vec<(Prefix, DateRange)>,
    },
    Reference {
        param: &'static str,
        /// (type if known, id)
        values: Vec<(Option<String>, String)>,
    },
    /// `param.inner`: resources whose `param` points at a `target` matching `inner`.
    Chain {
        param: &'static str,
        target: &'static str,
        inner: Box<Criterion>,
    },
}

/// Sort keys: `_lastUpdated`, `_id` or a date parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SortKey {
    LastUpdated,
    Id,
    Date(&'static str),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sort {
    pub key: SortKey,
    pub descending: bool,
}

/// `_include` or `_revinclude`: the source type, its reference parameter and an
/// optional target type.
#[derive(Debug, Clone)]
pub struct Include {
    pub source: &'static ResourceDef,
    pub param: &'static SearchParamDef,
    pub target_type: Option<String>,
}

/// A fully parsed search.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub resource: &'static ResourceDef,
    pub criteria: Vec<Criterion>,
    pub count: usize,
    pub offset: usize,
    pub total_accurate: bool,
    pub sort: Vec<Sort>,
    pub includes: Vec<Include>,
    pub revincludes: Vec<Include>,
    pub summary_count: bool,
    pub elements: Option<Vec<String>>,
    /// The parameters understood, as received, for `self` and paging links
    /// (without `_offset`, which each link sets).
    pub link_params: Vec<(String, String)>,
    /// Unknown parameters dropped under lenient handling: the answer says so (an
    /// OperationOutcome entry), never silently (R-MHD-4).
    pub ignored: Vec<String>,
}

/// Page size limits from configuration.
#[derive(Debug, Clone, Copy)]
pub struct PageLimits {
    pub default: usize,
    pub max: usize,
    /// Largest `_offset` (bounded work; past it, narrow the search).
    pub max_offset: usize,
    /// Most query parameters in one search (criteria, `_sort`, `_include`…).
    pub max_parameters: usize,
    /// Most comma-separated values of one parameter.
    pub max_values: usize,
    /// Most `_sort` terms.
    pub max_sort: usize,
    /// Most `_include` and `_revinclude` clauses together.
    pub max_includes: usize,
    /// Most rows one `_include` or `_revinclude` clause brings.
    pub max_include_rows: usize,
    /// Most versions one history request examines.
    pub max_history_scan: usize,
}

impl PageLimits {
    /// The default bounds with these page sizes.
    pub const fn pages(default: usize, max: usize) -> PageLimits {
        PageLimits {
            default,
            max,
            max_offset: 100_000,
            max_parameters: 64,
            max_values: 100,
            max_sort: 8,
            max_includes: 8,
            max_include_rows: 1000,
            max_history_scan: 10_000,
        }
    }
}

fn too_costly(message: impl Into<String>) -> ApiError {
    ApiError::bad_request(IssueCode::TooCostly, message)
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::bad_request(IssueCode::Invalid, message)
}

fn not_supported(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, IssueCode::NotSupported, message)
}

/// Splits a parameter value on unescaped commas (`\,` stays a comma).
fn split_or(value: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if matches!(chars.peek(), Some(',' | '|' | '$' | '\\')) => {
                parts
                    .last_mut()
                    .expect("never empty")
                    .push(chars.next().expect("peeked"));
            }
            ',' => parts.push(String::new()),
            other => parts.last_mut().expect("never empty").push(other),
        }
    }
    parts
}

fn parse_prefixed_date(param: &str, value: &str) -> Result<(Prefix, DateRange), ApiError> {
    let (prefix, rest) = match value.get(..2) {
        Some("eq") => (Prefix::Eq, &value[2..]),
        Some("ne") => (Prefix::Ne, &value[2..]),
        Some("gt") => (Prefix::Gt, &value[2..]),
        Some("lt") => (Prefix::Lt, &value[2..]),
        Some("ge") => (Prefix::Ge, &value[2..]),
        Some("le") => (Prefix::Le, &value[2..]),
        Some("sa" | "eb" | "ap") => {
            return Err(not_supported(format!(
                "date prefix {} is not supported for {param} (supported: eq, ne, gt, ge, lt, le)",
                &value[..2]
            )));
        }
        _ => (Prefix::Eq, value),
    };
    let range = parse_range(rest).ok_or_else(|| {
        invalid(format!(
            "invalid date {rest:?} for search parameter {param}"
        ))
        .at(param.to_owned())
    })?;
    Ok((prefix, range))
}

fn parse_token(value: &str) -> TokenValue {
    match value.split_once('|') {
        None => TokenValue {
            system: SystemMatch::Any,
            code: Some(value.to_owned()),
        },
        Some(("", code)) => TokenValue {
            system: SystemMatch::Absent,
            code: Some(code.to_owned()),
        },
        Some((system, code)) => TokenValue {
            system: SystemMatch::Is(system.to_owned()),
            code: (!code.is_empty()).then(|| code.to_owned()),
        },
    }
}

/// Builds the criterion for one parameter (already resolved on `def`).
fn parse_criterion(
    def: &'static ResourceDef,
    name: &str,
    modifier: Option<&str>,
    value: &str,
    max_values: usize,
) -> Result<Criterion, ApiError> {
    let values = split_or(value);
    if values.len() > max_values {
        return Err(too_costly(format!(
            "search parameter {name} has {} values; at most {max_values}",
            values.len()
        ))
        .at(name.to_owned()));
    }
    if values.iter().any(String::is_empty) {
        return Err(invalid(format!("empty value for search parameter {name}")).at(name.to_owned()));
    }
    let no_modifier = |kind: &str| -> Result<(), ApiError> {
        match modifier {
            None => Ok(()),
            Some(other) => Err(not_supported(format!(
                "modifier :{other} is not supported on {kind} parameter {name}"
            ))),
        }
    };
    match name {
        "_id" => {
            no_modifier("token")?;
            return Ok(Criterion::Id(values));
        }
        "_lastUpdated" => {
            no_modifier("date")?;
            let values = values
                .iter()
                .map(|value| parse_prefixed_date(name, value))
                .collect::<Result<_, _>>()?;
            return Ok(Criterion::LastUpdated(values));
        }
        _ => {}
    }
    let param = def
        .param(name)
        .ok_or_else(|| invalid(format!("unknown search parameter {name} for {}", def.name)))?;
    match param.kind {
        ParamKind::Token => {
            let negated = match modifier {
                None => false,
                Some("not") => true,
                Some(other) => {
                    return Err(not_supported(format!(
                        "modifier :{other} is not supported on token parameter {name}"
                    )));
                }
            };
            Ok(Criterion::Token {
                param: param.name,
                values: values.iter().map(|value| parse_token(value)).collect(),
                negated,
            })
        }
        ParamKind::String => {
            let mode = match modifier {
                None => StringMode::StartsWith,
                Some("exact") => StringMode::Exact,
                Some("contains") => StringMode::Contains,
                Some(other) => {
                    return Err(not_supported(format!(
                        "modifier :{other} is not supported on string parameter {name}"
                    )));
                }
            };
            Ok(Criterion::String {
                param: param.name,
                mode,
                values,
            })
        }
        ParamKind::Date => {
            no_modifier("date")?;
            let values = values
                .iter()
                .map(|value| parse_prefixed_date(name, value))
                .collect::<Result<_, _>>()?;
            Ok(Criterion::Date {
                param: param.name,
                values,
            })
        }
        ParamKind::Reference => {
            let type_modifier = match modifier {
                None => None,
                Some(kind) if param.targets.contains(&kind) => Some(kind.to_owned()),
                Some(other) => {
                    return Err(not_supported(format!(
                        "modifier :{other} is not supported on reference parameter {name}"
                    )));
                }
            };
            let mut parsed = Vec::new();
            for value in values {
                let target = match parse_reference(&value) {
                    Some((kind, id)) => (Some(kind), id),
                    None if super::is_valid_id(&value) => (type_modifier.clone(), value),
                    None => {
                        return Err(invalid(format!(
                            "invalid reference {value:?} for search parameter {name}"
                        ))
                        .at(name.to_owned()));
                    }
                };
                parsed.push(target);
            }
            Ok(Criterion::Reference {
                param: param.name,
                values: parsed,
            })
        }
    }
}

/// Parses a chained parameter `reference[:Type].inner[:modifier]`.
fn parse_chain(
    def: &'static ResourceDef,
    key: &str,
    value: &str,
    max_values: usize,
) -> Result<Criterion, ApiError> {
    let (head, tail) = key.split_once('.').expect("caller checked for a dot");
    let (name, type_modifier) = match head.split_once(':') {
        Some((name, kind)) => (name, Some(kind)),
        None => (head, None),
    };
    let param = def
        .param(name)
        .filter(|param| param.kind == ParamKind::Reference)
        .ok_or_else(|| invalid(format!("unknown reference parameter {name} in chain {key}")))?;
    let served_targets: Vec<&'static ResourceDef> = param
        .targets
        .iter()
        .filter_map(|target| definitions::resource(target))
        .collect();
    let target = match type_modifier {
        Some(kind) => served_targets
            .iter()
            .copied()
            .find(|target| target.name == kind)
            .ok_or_else(|| {
                not_supported(format!("chain target {kind} is not served for {name}"))
            })?,
        None if served_targets.len() == 1 => served_targets[0],
        None => {
            return Err(invalid(format!(
                "chain {key} is ambiguous: name the target type ({name}:Type.{tail})"
            )));
        }
    };
    if tail.contains('.') {
        return Err(not_supported(format!(
            "chains deeper than one level are not supported ({key})"
        )));
    }
    let (inner_name, inner_modifier) = match tail.split_once(':') {
        Some((name, modifier)) => (name, Some(modifier)),
        None => (tail, None),
    };
    let inner = parse_criterion(target, inner_name, inner_modifier, value, max_values)?;
    Ok(Criterion::Chain {
        param: param.name,
        target: target.name,
        inner: Box::new(inner),
    })
}

fn parse_include(
    searched: &'static ResourceDef,
    value: &str,
    reverse: bool,
) -> Result<Include, ApiError> {
    let parts: Vec<&str> = value.split(':').collect();
    let (source_name, param_name, target_type) = match parts.as_slice() {
        [source, param] => (*source, *param, None),
        [source, param, target] => (*source, *param, Some((*target).to_owned())),
        _ => {
            return Err(invalid(format!(
                "invalid {} value {value:?}: expected Type:param[:target]",
                if reverse { "_revinclude" } else { "_include" }
            )));
        }
    };
    let source = definitions::resource(source_name)
        .ok_or_else(|| invalid(format!("unknown resource type {source_name} in {value:?}")))?;
    if !reverse && source.name != searched.name {
        return Err(invalid(format!(
            "_include={value} must start with the searched type {}",
            searched.name
        )));
    }
    let param = source
        .param(param_name)
        .filter(|param| param.kind == ParamKind::Reference)
        .ok_or_else(|| {
            invalid(format!(
                "{source_name}:{param_name} is not a reference parameter"
            ))
        })?;
    if reverse {
        let points_here = param.targets.contains(&searched.name)
            && target_type
                .as_deref()
                .is_none_or(|target| target == searched.name);
        if !points_here {
            return Err(invalid(format!(
                "_revinclude={value} does not point at {}",
                searched.name
            )));
        }
    } else if let Some(target) = &target_type
        && !param.targets.contains(&target.as_str())
    {
        return Err(invalid(format!(
            "{target} is not a target of {source_name}:{param_name}"
        )));
    }
    Ok(Include {
        source,
        param,
        target_type,
    })
}

fn parse_count(value: &str, name: &str) -> Result<usize, ApiError> {
    value.parse::<usize>().map_err(|_| {
        invalid(format!(
            "{name} must be a non-negative integer, got {value:?}"
        ))
        .at(name.to_owned())
    })
}

/// Parses the query pairs of a search on `def`.
pub fn parse(
    def: &'static ResourceDef,
    pairs: &[(String, String)],
    strict: bool,
    limits: PageLimits,
) -> Result<SearchRequest, ApiError> {
    let mut request = SearchRequest {
        resource: def,
        criteria: Vec::new(),
        count: limits.default,
        offset: 0,
        total_accurate: false,
        sort: Vec::new(),
        includes: Vec::new(),
        revincludes: Vec::new(),
        summary_count: false,
        elements: None,
        link_params: Vec::new(),
        ignored: Vec::new(),
    };
    // Counted as its paging links will carry them, so that every link is a search
    // this bound lets through: a link sets its own `_count` and `_offset` and, on a
    // log, adds `_lastUpdated` when the search has none.
    let named = |name: &str| usize::from(pairs.iter().any(|(key, _)| key == name));
    let snapshot = usize::from(def.log) * (1 - named("_lastUpdated"));
    let counted = pairs.len() - named("_count") - named("_offset") + snapshot;
    if counted > limits.max_parameters {
        return Err(too_costly(format!(
            "a search takes at most {} parameters besides _count and _offset{}, not {}",
            limits.max_parameters,
            if snapshot > 0 {
                " (its paging links add _lastUpdated)"
            } else {
                ""
            },
            counted
        )));
    }
    for (key, value) in pairs {
        if crate::fhir::has_forbidden_control(key) || crate::fhir::has_forbidden_control(value) {
            return Err(invalid(format!(
                "search parameter {key:?} carries a control character FHIR strings may not hold"
            )));
        }
        let mut keep = true;
        match key.as_str() {
            "_count" => request.count = parse_count(value, key)?.min(limits.max),
            "_offset" => {
                request.offset = parse_count(value, key)?;
                if request.offset > limits.max_offset {
                    return Err(too_costly(format!(
                        "_offset is at most {}: narrow the search instead",
                        limits.max_offset
                    ))
                    .at("_offset"));
                }
                keep = false;
            }
            "_total" => match value.as_str() {
                "accurate" => request.total_accurate = true,
                "none" | "estimate" => request.total_accurate = false,
                other => {
                    return Err(invalid(format!(
                        "_total must be none, estimate or accurate, got {other:?}"
                    )));
                }
            },
            "_summary" => match value.as_str() {
                "count" => request.summary_count = true,
                "false" => {}
                other => {
                    return Err(not_supported(format!(
                        "_summary={other} is not supported (supported: count, false)"
                    )));
                }
            },
            "_elements" => {
                let names: Vec<String> = value
                    .split(',')
                    .map(|name| name.trim().to_owned())
                    .filter(|name| !name.is_empty())
                    .collect();
                request.elements = Some(names);
            }
            "_sort" => {
                for item in value.split(',') {
                    let (descending, name) = match item.strip_prefix('-') {
                        Some(name) => (true, name),
                        None => (false, item),
                    };
                    let key = match name {
                        "_lastUpdated" => SortKey::LastUpdated,
                        "_id" => SortKey::Id,
                        other if definitions::sortable(def, other) => {
                            SortKey::Date(def.param(other).expect("sortable").name)
                        }
                        other => {
                            return Err(not_supported(format!(
                                "cannot sort {} by {other:?} (sortable: _lastUpdated, _id and date parameters)",
                                def.name
                            )));
                        }
                    };
                    request.sort.push(Sort { key, descending });
                    if request.sort.len() > limits.max_sort {
                        return Err(too_costly(format!(
                            "_sort takes at most {} terms",
                            limits.max_sort
                        ))
                        .at("_sort"));
                    }
                }
            }
            "_include" | "_revinclude" => {
                let reverse = key == "_revinclude";
                let include = parse_include(def, value, reverse)?;
                if reverse {
                    request.revincludes.push(include);
                } else {
                    request.includes.push(include);
                }
                if request.includes.len() + request.revincludes.len() > limits.max_includes {
                    return Err(too_costly(format!(
                        "at most {} _include and _revinclude clauses",
                        limits.max_includes
                    )));
                }
            }
            "_include:iterate" | "_revinclude:iterate" => {
                return Err(not_supported(format!("{key} is not supported")));
            }
            "_format" | "_pretty" => keep = false,
            _ => {
                // A dotted name the table declares (`author.family`) is a parameter of
                // its own, not a chain; a typed chain (`entity:DocumentReference.status`)
                // is one, its name declared and its type and inner name after the colon.
                let (name, modifier) = key
                    .split_once(':')
                    .map_or((key.as_str(), None), |(name, modifier)| {
                        (name, Some(modifier))
                    });
                let declared = def.param(name).is_some();
                let typed_chain = modifier.is_some_and(|modifier| modifier.contains('.'));
                if key.contains('.') && (!declared || typed_chain) {
                    request
                        .criteria
                        .push(parse_chain(def, key, value, limits.max_values)?);
                } else {
                    let (name, modifier) = match key.split_once(':') {
                        Some((name, modifier)) => (name, Some(modifier)),
                        None => (key.as_str(), None),
                    };
                    let known = definitions::COMMON_PARAMS
                        .iter()
                        .any(|(common, _)| *common == name)
                        || def.param(name).is_some();
                    if known {
                        request.criteria.push(parse_criterion(
                            def,
                            name,
                            modifier,
                            value,
                            limits.max_values,
                        )?);
                    } else if strict {
                        return Err(invalid(format!(
                            "unknown search parameter {name} for {}",
                            def.name
                        ))
                        .at(name.to_owned()));
                    } else {
                        // Lenient handling: not applied, left out of the self link,
                        // and named in a warning of the answer.
                        keep = false;
                        if !request.ignored.contains(key) {
                            request.ignored.push(key.clone());
                        }
                    }
                }
            }
        }
        if keep {
            request.link_params.push((key.clone(), value.clone()));
        }
    }
    // A log reads newest first (the trace, R-PAT-4).
    if request.sort.is_empty() && def.log {
        request.sort.push(Sort {
            key: SortKey::LastUpdated,
            descending: true,
        });
    }
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_refused() {
        let def = definitions::resource("Patient").expect("Patient is served");
        let limits = PageLimits::pages(20, 500);
        let search = |key: &str, value: &str| {
            parse(def, &[(key.to_owned(), value.to_owned())], false, limits)
        };
        for (key, value) in [("_id", "a\u{0}"), ("family", "\u{1}"), ("fam\u{0}ily", "x")] {
            let error = search(key, value).expect_err("a control character");
            assert_eq!(error.status, StatusCode::BAD_REQUEST, "{key:?}={value:?}");
        }
        assert!(
            search("family", "Mar\ttin").is_ok(),
            "a tab is a FHIR string's"
        );
    }

    /// A search within the bound has paging links within it too.
    #[test]
    fn the_parameter_bound_leaves_room_for_paging_links() {
        let limits = PageLimits::pages(20, 500);
        let ids = |count: usize| -> Vec<(String, String)> {
            (0..count)
                .map(|n| ("_id".to_owned(), format!("id-{n}")))
                .collect()
        };
        let patient = definitions::resource("Patient").expect("Patient is served");
        let mut pairs = ids(limits.max_parameters);
        let request = parse(patient, &pairs, false, limits).expect("at the bound");
        let mut link = request.link_params.clone();
        link.extend([
            ("_count".to_owned(), "20".to_owned()),
            ("_offset".to_owned(), "20".to_owned()),
        ]);
        assert!(parse(patient, &link, false, limits).is_ok(), "its link");
        pairs.push(("_count".to_owned(), "5".to_owned()));
        pairs.push(("_offset".to_owned(), "5".to_owned()));
        assert!(parse(patient, &pairs, false, limits).is_ok(), "with paging");
        pairs.push(("_count".to_owned(), "6".to_owned()));
        assert!(
            parse(patient, &pairs, false, limits).is_err(),
            "past the bound"
        );
        // A log's links add `_lastUpdated`.
        let trace = definitions::resource("AuditEvent").expect("AuditEvent is served");
        assert!(parse(trace, &ids(limits.max_parameters), false, limits).is_err());
        let mut pairs = ids(limits.max_parameters - 1);
        pairs.push(("_lastUpdated".to_owned(), "le2030".to_owned()));
        assert!(parse(trace, &pairs, false, limits).is_ok());
    }
}
