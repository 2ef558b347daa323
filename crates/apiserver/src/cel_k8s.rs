//! Kubernetes' CEL extension libraries, as Kubernetes 1.32 offers them to CRD
//! `x-kubernetes-validations` rules, registered on the `cel` crate's environment: the IP and
//! CIDR libraries (`isIP`, `ip`, `ip.isCanonical`, `isCIDR`, `cidr` and their member
//! functions, `string(…)` and equality on both), the Kubernetes lists library (`isSorted`,
//! `sum`, `min`, `max`, `indexOf`, `lastIndexOf`), the regex library (`find`, `findAll`), the
//! quantity library (in `quantity`), the URL library (in `url`), the format library (in
//! `format`), cel-go's sets extension (`sets.contains`, `sets.equivalent`, `sets.intersects`),
//! cel-go's two-variable comprehensions (in `comprehensions`), and cel-go's strings extension
//! (version 2), which the `cel` crate itself provides.
//!
//! This module also owns the list of what a rule may call ([`unsupported_calls`]): a CRD whose
//! rule calls anything else is refused when it is registered.

use std::any::Any;
use std::cmp::Ordering;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, OnceLock};

use cel::common::ast::{EntryExpr, Expr, IdedExpr};
use cel::common::types::{
    CelBool, CelInt, CelList, CelString, Kind, Type, DYN_TYPE, INT_TYPE, LIST_TYPE, STRING_TYPE,
};
use cel::common::value::{CowVal, StaticVal, Val};
use cel::{DeclarationError, Env, ExecutionError};

/// Implements the `cel` crate's value traits for a custom CEL type (`$cel_type`, a static
/// `Type`) whose CEL equality is its Rust `PartialEq`.
macro_rules! custom_val {
    ($ty:ty, $cel_type:expr) => {
        impl Val for $ty {
            fn get_type(&self) -> &Type {
                &$cel_type
            }

            fn cel_type() -> &'static Type {
                &$cel_type
            }

            fn equals(&self, other: &dyn Val) -> bool {
                other.downcast_ref::<Self>().is_some_and(|o| o == self)
            }

            fn clone_as_boxed<'v>(&self) -> Box<dyn Val + 'v> {
                Box::new(Clone::clone(self))
            }

            fn as_any(&self) -> Option<&dyn Any> {
                Some(self)
            }
        }

        impl StaticVal for $ty {}
    };
}

mod comprehensions;
mod format;
mod quantity;
mod url;

/// The CEL type of `ip(…)` values, named as in Kubernetes (`type(ip('::1')) == net.IP`).
static IP_TYPE: Type = Type::new_unspecified_type("net.IP");
/// The CEL type of `cidr(…)` values (`net.CIDR`).
static CIDR_TYPE: Type = Type::new_unspecified_type("net.CIDR");

/// Global functions a rule may call: the CEL standard library Kubernetes has, and the
/// Kubernetes and cel-go extension libraries this module registers.
const GLOBAL_FUNCTIONS: &[&str] = &[
    // standard library
    "size",
    "int",
    "uint",
    "double",
    "string",
    "bytes",
    "bool",
    "dyn",
    "type",
    "duration",
    "timestamp",
    "matches",
    "optional.none",
    "optional.of",
    "optional.ofNonZeroValue",
    // cel-go strings extension
    "strings.quote",
    // cel-go sets extension
    "sets.contains",
    "sets.equivalent",
    "sets.intersects",
    // Kubernetes IP and CIDR libraries
    "isIP",
    "ip",
    "ip.isCanonical",
    "isCIDR",
    "cidr",
    // Kubernetes quantity library
    "quantity",
    "isQuantity",
    "sign",
    // Kubernetes URL library
    "url",
    "isURL",
    // Kubernetes format library
    "format.named",
    "format.dns1123Label",
    "format.dns1123Subdomain",
    "format.dns1035Label",
    "format.qualifiedName",
    "format.dns1123LabelPrefix",
    "format.dns1123SubdomainPrefix",
    "format.dns1035LabelPrefix",
    "format.labelValue",
    "format.uri",
    "format.uuid",
    "format.byte",
    "format.date",
    "format.datetime",
];

/// Member functions (`x.f(…)`) a rule may call.
const MEMBER_FUNCTIONS: &[&str] = &[
    // standard library
    "size",
    "contains",
    "startsWith",
    "endsWith",
    "matches",
    "getSeconds",
    "getMilliseconds",
    "getMinutes",
    "getHours",
    "getDate",
    "getDayOfMonth",
    "getDayOfWeek",
    "getDayOfYear",
    "getFullYear",
    "getMonth",
    "hasValue",
    "value",
    "or",
    "orValue",
    // cel-go strings extension, version 2 (what Kubernetes 1.29+ enables)
    "charAt",
    "indexOf",
    "lastIndexOf",
    "lowerAscii",
    "upperAscii",
    "replace",
    "split",
    "substring",
    "trim",
    "join",
    "format",
    // Kubernetes lists library (indexOf/lastIndexOf above serve lists too)
    "isSorted",
    "sum",
    "min",
    "max",
    // Kubernetes regex library
    "find",
    "findAll",
    // Kubernetes IP library
    "family",
    "isUnspecified",
    "isLoopback",
    "isLinkLocalMulticast",
    "isLinkLocalUnicast",
    "isGlobalUnicast",
    // Kubernetes CIDR library
    "containsIP",
    "containsCIDR",
    "ip",
    "masked",
    "prefixLength",
    // Kubernetes quantity library
    "sign",
    "isInteger",
    "asInteger",
    "asApproximateFloat",
    "compareTo",
    "isGreaterThan",
    "isLessThan",
    "add",
    "sub",
    // Kubernetes URL library
    "getScheme",
    "getHost",
    "getHostname",
    "getPort",
    "getEscapedPath",
    "getQuery",
    // Kubernetes format library
    "validate",
];

/// Identifiers a rule may name besides its variables: type names.
const TYPE_NAMES: &[&str] = &[
    "int",
    "uint",
    "double",
    "bool",
    "string",
    "bytes",
    "list",
    "map",
    "null_type",
    "type",
    "google.protobuf.Duration",
    "google.protobuf.Timestamp",
    "net.IP",
    "net.CIDR",
    "kubernetes.Quantity",
    "kubernetes.URL",
];

/// The evaluation environment: the standard library, cel-go's strings extension and the
/// Kubernetes libraries. Built once; a registration failure (a bug, caught by the tests) is
/// reported as the reason every rule is refused.
pub(crate) fn env() -> Result<Arc<Env>, String> {
    static ENV: OnceLock<Result<Arc<Env>, String>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Env::stdlib();
        env.add_extension(cel::extensions::strings)
            .and_then(|()| env.add_extension(kubernetes))
            .map_err(|error| format!("CEL environment: {error}"))?;
        Ok(Arc::new(env))
    })
    .clone()
}

/// The calls and identifiers of a compiled rule that the environment does not provide (or that
/// are not variables `self`/`oldSelf`), each described for the refusal message.
pub(crate) fn unsupported_calls(expression: &IdedExpr) -> Vec<String> {
    let mut out = Vec::new();
    let mut bound = Vec::new();
    check(expression, &mut bound, &mut out);
    out.sort();
    out.dedup();
    out
}

fn check(expression: &IdedExpr, bound: &mut Vec<String>, out: &mut Vec<String>) {
    match &expression.expr {
        Expr::Unspecified | Expr::Literal(_) => {}
        Expr::Ident(name) => {
            if !(bound.iter().any(|b| b == name)
                || matches!(name.as_str(), "self" | "oldSelf")
                || TYPE_NAMES.contains(&name.as_str())
                || name.starts_with('@'))
            {
                out.push(format!("undeclared reference: {name}"));
            }
        }
        Expr::Select(select) => {
            if let Some(name) = qualified_name(expression) {
                if TYPE_NAMES.contains(&name.as_str()) {
                    return;
                }
            }
            check(&select.operand, bound, out);
        }
        Expr::Call(call) => {
            let name = call.func_name.as_str();
            let operator = name.starts_with('_') || name.starts_with('@') || name.starts_with("!_");
            match &call.target {
                None => {
                    if !operator && !GLOBAL_FUNCTIONS.contains(&name) {
                        out.push(format!("unsupported function: {name}"));
                    }
                }
                Some(target) => {
                    let namespaced = qualified_name(target)
                        .map(|prefix| format!("{prefix}.{name}"))
                        .filter(|full| GLOBAL_FUNCTIONS.contains(&full.as_str()));
                    if namespaced.is_none() {
                        if !operator && !MEMBER_FUNCTIONS.contains(&name) {
                            out.push(format!("unsupported function: {name}"));
                        }
                        check(target, bound, out);
                    }
                }
            }
            for arg in &call.args {
                check(arg, bound, out);
            }
        }
        Expr::Comprehension(comprehension) => {
            check(&comprehension.iter_range, bound, out);
            check(&comprehension.accu_init, bound, out);
            let before = bound.len();
            bound.push(comprehension.iter_var.clone());
            if let Some(second) = &comprehension.iter_var2 {
                bound.push(second.clone());
            }
            bound.push(comprehension.accu_var.clone());
            check(&comprehension.loop_cond, bound, out);
            check(&comprehension.loop_step, bound, out);
            check(&comprehension.result, bound, out);
            bound.truncate(before);
        }
        Expr::List(list) => {
            for element in &list.elements {
                check(element, bound, out);
            }
        }
        Expr::Map(map) => {
            for entry in &map.entries {
                match &entry.expr {
                    EntryExpr::MapEntry(entry) => {
                        check(&entry.key, bound, out);
                        check(&entry.value, bound, out);
                    }
                    EntryExpr::StructField(field) => check(&field.value, bound, out),
                }
            }
        }
        Expr::Struct(structure) => out.push(format!(
            "unsupported message construction: {}",
            structure.type_name
        )),
    }
}

/// `a.b.c` for an expression that spells a dotted name.
fn qualified_name(expression: &IdedExpr) -> Option<String> {
    match &expression.expr {
        Expr::Ident(name) => Some(name.clone()),
        Expr::Select(select) if !select.test => {
            qualified_name(&select.operand).map(|prefix| format!("{prefix}.{}", select.field))
        }
        _ => None,
    }
}

/// Registers the Kubernetes libraries (and cel-go's sets extension) on `env`.
fn kubernetes(env: &mut Env) -> Result<(), DeclarationError> {
    env.add_type(IP_TYPE.to_owned())?;
    env.add_type(CIDR_TYPE.to_owned())?;

    // IP library
    env.add_overload("isIP", "is_ip", vec![STRING_TYPE], is_ip)?;
    env.add_overload("ip", "string_to_ip", vec![STRING_TYPE], string_to_ip)?;
    env.add_overload(
        "ip.isCanonical",
        "ip_is_canonical",
        vec![STRING_TYPE],
        ip_is_canonical,
    )?;
    env.add_overload(
        "string",
        "ip_to_string",
        vec![IP_TYPE.to_owned()],
        ip_to_string,
    )?;
    let ip_predicates: [(&str, &str, cel::common::functions::Function); 6] = [
        ("family", "ip_family", ip_family),
        ("isUnspecified", "ip_is_unspecified", ip_is_unspecified),
        ("isLoopback", "ip_is_loopback", ip_is_loopback),
        (
            "isLinkLocalMulticast",
            "ip_is_link_local_multicast",
            ip_is_link_local_multicast,
        ),
        (
            "isLinkLocalUnicast",
            "ip_is_link_local_unicast",
            ip_is_link_local_unicast,
        ),
        (
            "isGlobalUnicast",
            "ip_is_global_unicast",
            ip_is_global_unicast,
        ),
    ];
    for (name, id, function) in ip_predicates {
        env.add_member_overload(name, id, IP_TYPE.to_owned(), vec![], function)?;
    }

    // CIDR library
    env.add_overload("isCIDR", "is_cidr", vec![STRING_TYPE], is_cidr)?;
    env.add_overload("cidr", "string_to_cidr", vec![STRING_TYPE], string_to_cidr)?;
    env.add_overload(
        "string",
        "cidr_to_string",
        vec![CIDR_TYPE.to_owned()],
        cidr_to_string,
    )?;
    env.add_member_overload(
        "containsIP",
        "cidr_contains_ip_string",
        CIDR_TYPE.to_owned(),
        vec![STRING_TYPE],
        cidr_contains_ip,
    )?;
    env.add_member_overload(
        "containsIP",
        "cidr_contains_ip_ip",
        CIDR_TYPE.to_owned(),
        vec![IP_TYPE.to_owned()],
        cidr_contains_ip,
    )?;
    env.add_member_overload(
        "containsCIDR",
        "cidr_contains_cidr_string",
        CIDR_TYPE.to_owned(),
        vec![STRING_TYPE],
        cidr_contains_cidr,
    )?;
    env.add_member_overload(
        "containsCIDR",
        "cidr_contains_cidr",
        CIDR_TYPE.to_owned(),
        vec![CIDR_TYPE.to_owned()],
        cidr_contains_cidr,
    )?;
    env.add_member_overload("ip", "cidr_ip", CIDR_TYPE.to_owned(), vec![], cidr_ip)?;
    env.add_member_overload(
        "masked",
        "cidr_masked",
        CIDR_TYPE.to_owned(),
        vec![],
        cidr_masked,
    )?;
    env.add_member_overload(
        "prefixLength",
        "cidr_prefix_length",
        CIDR_TYPE.to_owned(),
        vec![],
        cidr_prefix_length,
    )?;

    // Kubernetes lists library
    env.add_member_overload("isSorted", "list_is_sorted", LIST_TYPE, vec![], is_sorted)?;
    env.add_member_overload("sum", "list_sum", LIST_TYPE, vec![], list_sum)?;
    env.add_member_overload("min", "list_min", LIST_TYPE, vec![], list_min)?;
    env.add_member_overload("max", "list_max", LIST_TYPE, vec![], list_max)?;
    env.add_member_overload(
        "indexOf",
        "list_index_of",
        LIST_TYPE,
        vec![DYN_TYPE],
        list_index_of,
    )?;
    env.add_member_overload(
        "lastIndexOf",
        "list_last_index_of",
        LIST_TYPE,
        vec![DYN_TYPE],
        list_last_index_of,
    )?;

    // Kubernetes regex library
    env.add_member_overload(
        "find",
        "string_find_string",
        STRING_TYPE,
        vec![STRING_TYPE],
        find,
    )?;
    env.add_member_overload(
        "findAll",
        "string_find_all_string",
        STRING_TYPE,
        vec![STRING_TYPE],
        find_all,
    )?;
    env.add_member_overload(
        "findAll",
        "string_find_all_string_int",
        STRING_TYPE,
        vec![STRING_TYPE, INT_TYPE],
        find_all,
    )?;

    quantity::register(env)?;
    url::register(env)?;
    format::register(env)?;
    comprehensions::register(env)?;

    // cel-go sets extension
    env.add_overload(
        "sets.contains",
        "list_sets_contains_list",
        vec![LIST_TYPE, LIST_TYPE],
        sets_contains,
    )?;
    env.add_overload(
        "sets.equivalent",
        "list_sets_equivalent_list",
        vec![LIST_TYPE, LIST_TYPE],
        sets_equivalent,
    )?;
    env.add_overload(
        "sets.intersects",
        "list_sets_intersects_list",
        vec![LIST_TYPE, LIST_TYPE],
        sets_intersects,
    )?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Values

/// An `ip(…)` value: an IPv4 or IPv6 address, never IPv4-mapped, never with a zone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ip(IpAddr);

custom_val!(Ip, IP_TYPE);

/// A `cidr(…)` value: an address and a prefix length, the address kept as written (host bits
/// included), as Go's `netip.Prefix` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cidr {
    addr: IpAddr,
    prefix_length: u8,
}

custom_val!(Cidr, CIDR_TYPE);

impl Cidr {
    /// The network: the address with the bits past the prefix cleared.
    fn masked(self) -> Self {
        Self {
            addr: mask(self.addr, self.prefix_length),
            prefix_length: self.prefix_length,
        }
    }

    fn contains_ip(self, ip: IpAddr) -> bool {
        same_family(self.addr, ip)
            && mask(ip, self.prefix_length) == mask(self.addr, self.prefix_length)
    }

    fn contains_cidr(self, other: Self) -> bool {
        other.prefix_length >= self.prefix_length && self.contains_ip(other.addr)
    }
}

fn same_family(a: IpAddr, b: IpAddr) -> bool {
    a.is_ipv4() == b.is_ipv4()
}

/// `addr` with every bit past the first `prefix_length` cleared.
fn mask(addr: IpAddr, prefix_length: u8) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let kept = u32::MAX
                .checked_shl(32 - u32::from(prefix_length.min(32)))
                .unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(bits & kept))
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let kept = u128::MAX
                .checked_shl(128 - u32::from(prefix_length.min(128)))
                .unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(bits & kept))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing, with Kubernetes' rules on top of Go's `netip`

/// Parses an address as Go's `netip.ParseAddr` does (no leading zeros in IPv4 octets), then
/// refuses zones and IPv4-mapped IPv6 addresses as Kubernetes does.
fn parse_ip(raw: &str) -> Result<IpAddr, String> {
    if let Some((address, _zone)) = raw.split_once('%') {
        if address.parse::<Ipv6Addr>().is_ok() {
            return Err(format!("IP address {raw:?} with zone value is not allowed"));
        }
    }
    let addr: IpAddr = raw.parse().map_err(|_| {
        format!("IP Address {raw:?} parse error during conversion from string: ParseAddr({raw:?}): invalid IP address")
    })?;
    if let IpAddr::V6(v6) = addr {
        if v6.to_ipv4_mapped().is_some() {
            return Err(format!("IPv4-mapped IPv6 address {raw:?} is not allowed"));
        }
    }
    Ok(addr)
}

/// Parses `address/length` as Go's `netip.ParsePrefix` does (the address is kept unmasked;
/// the length is decimal without sign or leading zero), then refuses IPv4-mapped addresses.
fn parse_cidr(raw: &str) -> Result<Cidr, String> {
    let context = "network address parse error during conversion from string";
    let Some((address, length)) = raw.rsplit_once('/') else {
        return Err(format!("{context}: ParsePrefix({raw:?}): no '/'"));
    };
    if address.contains('%') {
        return Err(format!(
            "{context}: ParsePrefix({raw:?}): IPv6 zones cannot be present in a prefix"
        ));
    }
    let addr: IpAddr = address
        .parse()
        .map_err(|_| format!("{context}: ParsePrefix({raw:?}): invalid IP address"))?;
    let well_formed = !length.is_empty()
        && length.bytes().all(|b| b.is_ascii_digit())
        && (length == "0" || !length.starts_with('0'));
    let prefix_length = length
        .parse::<u8>()
        .ok()
        .filter(|_| well_formed)
        .ok_or_else(|| {
            format!("{context}: ParsePrefix({raw:?}): bad bits after slash: {length:?}")
        })?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if prefix_length > max {
        return Err(format!(
            "{context}: ParsePrefix({raw:?}): prefix length out of range"
        ));
    }
    if let IpAddr::V6(v6) = addr {
        if v6.to_ipv4_mapped().is_some() {
            return Err(format!("IPv4-mapped IPv6 address {raw:?} is not allowed"));
        }
    }
    Ok(Cidr {
        addr,
        prefix_length,
    })
}

// ---------------------------------------------------------------------------------------------
// Argument helpers

type Args<'b, 'v> = Vec<CowVal<'b, 'v>>;
type Outcome<'b, 'v> = Result<CowVal<'b, 'v>, ExecutionError>;

fn argument<'a, 'b, 'v, T>(
    args: &'a [CowVal<'b, 'v>],
    index: usize,
) -> Result<&'a T, ExecutionError>
where
    T: cel::common::value::FromVal<'a, 'v> + Val,
{
    let value = args
        .get(index)
        .ok_or_else(|| ExecutionError::invalid_argument_count(index + 1, args.len()))?;
    let value: &'a (dyn Val + 'v) = value.as_ref();
    value
        .downcast_ref::<T>()
        .ok_or_else(|| ExecutionError::UnexpectedType {
            got: value.get_type().name().to_owned(),
            want: T::cel_type().name().to_owned(),
        })
}

fn string_argument<'a>(
    args: &'a [CowVal<'_, '_>],
    index: usize,
) -> Result<&'a str, ExecutionError> {
    let value = args
        .get(index)
        .ok_or_else(|| ExecutionError::invalid_argument_count(index + 1, args.len()))?;
    value
        .as_ref()
        .downcast_ref::<CelString<'_>>()
        .map(|s| s.inner())
        .ok_or_else(|| ExecutionError::UnexpectedType {
            got: value.get_type().name().to_owned(),
            want: STRING_TYPE.name().to_owned(),
        })
}

/// The `IpAddr` of an argument that is an `ip` or, for the string overloads, a string.
fn ip_argument(
    function: &str,
    args: &[CowVal<'_, '_>],
    index: usize,
) -> Result<IpAddr, ExecutionError> {
    if let Ok(ip) = argument::<Ip>(args, index) {
        return Ok(ip.0);
    }
    let raw = string_argument(args, index)?;
    parse_ip(raw).map_err(|error| ExecutionError::function_error(function, error))
}

fn cidr_argument(
    function: &str,
    args: &[CowVal<'_, '_>],
    index: usize,
) -> Result<Cidr, ExecutionError> {
    if let Ok(cidr) = argument::<Cidr>(args, index) {
        return Ok(*cidr);
    }
    let raw = string_argument(args, index)?;
    parse_cidr(raw).map_err(|error| ExecutionError::function_error(function, error))
}

fn boolean<'b, 'v>(value: bool) -> Outcome<'b, 'v> {
    Ok(CowVal::owned(CelBool::from(value)))
}

fn integer<'b, 'v>(value: i64) -> Outcome<'b, 'v> {
    Ok(CowVal::owned(CelInt::from(value)))
}

fn text<'b, 'v>(value: String) -> Outcome<'b, 'v> {
    Ok(CowVal::owned(CelString::from(value)))
}

// ---------------------------------------------------------------------------------------------
// IP library

fn is_ip<'b, 'v>(args: Args<'b, 'v>) -> Outcome<'b, 'v> {
    boolean(parse_ip(string_argument(&args, 0)?).is_ok())
}

fn string_to_ip<'b, 'v>(args: Args<'b, 'v>) -> Outcome<'b, 'v> {
    let raw = string_argument(&args, 0)?;
    let addr = parse_ip(raw).map_err(|error| ExecutionError::function_error("ip", error))?;
    Ok(CowVal::owned(Ip(addr)))
}

fn ip_is_canonical<'b, 'v>(args: Args<'b, 'v>) -> Outcome<'b, 'v> {
    let raw = string_argument(&args, 0)?;
    let addr =
        parse_ip(raw).map_err(|error| ExecutionError::function_error("ip.isCanonical", error))?;
    boolean(addr.to_string() == raw)
}

fn ip_to_string<'b, 'v>(args: Args<'b, 'v>) -> Outcome<'b, 'v> {
    text(argument::<Ip>(&args, 0)?.0.to_string())
}

fn ip_family<'b, 'v>(args: Args<'b, 'v>) -> Outcome<'b, 'v> {
    integer(if argument::<Ip>(&args, 0)?.0.is_ipv4() {
        4
    } else {
        6
    })
}

fn ip_is_unspecified<'b, 'v>(args: Args<'b, 'v>) -> Outcome<'b, 'v> {
    boolean(argument::<Ip>(&args, 0)?.0.is_unspecified())
}

fn ip_is_loopback<'b, 'v>(args: Args<'b, 'v>) -> Outcome<'b, 'v> {
    boolean(argument::<Ip>(&args, 0)?.0.is_loopback())
}

fn ip_is_link_local_multicast<'b, 'v>(args: Args<'b, 'v>) -> Outcome<'b, 'v> {
    boolean(is_link_local_multicast(argument::<Ip>(&args, 0)?.0))
}

fn ip_is_link_local_unicast<'b, 'v>(args: Args<'b, 'v>) -> Outcome<'b, 'v> {
    boolean(is_link_local_unicast(argument::<Ip>(&args, 0)?.0))
}

fn ip_is_global_unicast<'b, 'v>(args: Args<'b, 'v>) -> Outcome<'b, 'v> {
    boolean(is_global_unicast(argument::<Ip>(&args, 0)?.0))
}

/// 224.0.0.0/24, or an IPv6 multicast address of link-local scope (`ffX2::/16`), as Go's
/// `netip.Addr.IsLinkLocalMulticast`.
fn is_link_local_multicast(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(v4) => matches!(v4.octets(), [224, 0, 0, _]),
        IpAddr::V6(v6) => v6.segments()[0] & 0xff0f == 0xff02,
    }
}

/// 169.254.0.0/16 or fe80::/10.
fn is_link_local_unicast(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
    }
}

/// Go's `netip.Addr.IsGlobalUnicast`: not unspecified, not the IPv4 broadcast address, not
/// loopback, multicast or link-local unicast (private and ULA addresses count as global).
fn is_global_unicast(addr: IpAddr) -> bool {
    if let IpAddr::V4(v4) = addr {
        if v4.is_broadcast() {
            return false;
        }
    }
    !(addr.is_unspecified()
        || addr.is_loopback()
        || addr.is_multicast()
        || is_link_local_unicast(addr))
}

// ---------------------------------------------------------------------------------------------
// CIDR library

fn is_cidr<'b, 'v>(args: Args<'b, 'v>) -> Outcome<'b, 'v> {
    boolean(parse_cidr(string_argument(&args, 0)?).is_ok())
}

fn string_to_cidr<'b, 'v>(args: Args<'b, 'v>) -> Outcome<'b, 'v> {
    let raw = string_argument(&args, 0)?;
    let cidr = parse_cidr(raw).map_err(|error| ExecutionError::function_error("cidr", error))?;
    Ok(CowVal::owned(cidr))
}

fn cidr_to_string<'b, 'v>(args: Args<'b, 'v>) -> Outcome<'b, 'v> {
    let cidr = argument::<Cidr>(&args, 0)?;
    text(format!("{}/{}", cidr.addr, cidr.prefix_length))
}

fn cidr_contains_ip<'b, 'v>(args: Args<'b, 'v>) -> Outcome<'b, 'v> {
    let cidr = argument::<Cidr>(&args, 0)?;
    let ip = ip_argument("containsIP", &args, 1)?;
    boolean(cidr.contains_ip(ip))
}

fn cidr_contains_cidr<'b, 'v>(args: Args<'b, 'v>) -> Outcome<'b, 'v> {
    let cidr = argument::<Cidr>(&args, 0)?;
    let other = cidr_argument("containsCIDR", &args, 1)?;
    boolean(cidr.contains_cidr(other))
}

fn cidr_ip<'b, 'v>(args: Args<'b, 'v>) -> Outcome<'b, 'v> {
    Ok(CowVal::owned(Ip(argument::<Cidr>(&args, 0)?.addr)))
}

fn cidr_masked<'b, 'v>(args: Args<'b, 'v>) -> Outcome<'b, 'v> {
    Ok(CowVal::owned(argument::<Cidr>(&args, 0)?.masked()))
}

fn cidr_prefix_length<'b, 'v>(args: Args<'b, 'v>) -> Outcome<'b, 'v> {
    integer(i64::from(argument::<Cidr>(&args, 0)?.prefix_length))
}

// ---------------------------------------------------------------------------------------------
// Lists library

/// The elements of the list argument at `index`.
fn elements<'a, 'v>(
    function: &str,
    args: &'a [CowVal<'_, 'v>],
    index: usize,
) -> Result<Vec<&'a (dyn Val + 'v)>, ExecutionError> {
    let list = args
        .get(index)
        .ok_or_else(|| ExecutionError::invalid_argument_count(index + 1, args.len()))?;
    let list: &'a (dyn Val + 'v) = list.as_ref();
    let iterable = list.as_iterable().ok_or_else(|| {
        ExecutionError::no_such_member_overload(function, vec![list.get_type().name().to_owned()])
    })?;
    let mut iterator = iterable.iter();
    let mut out = Vec::new();
    while let Some(item) = iterator.next() {
        out.push(item);
    }
    Ok(out)
}

fn compare(function: &str, left: &dyn Val, right: &dyn Val) -> Result<Ordering, ExecutionError> {
    let comparer = left.as_comparer().ok_or_else(|| {
        ExecutionError::no_such_member_overload(
            function,
            vec![format!("list({})", left.get_type().name())],
        )
    })?;
    comparer.compare(right)
}

fn is_sorted<'b, 'v>(args: Args<'b, 'v>) -> Outcome<'b, 'v> {
    let items = elements("isSorted", &args, 0)?;
    for pair in items.windows(2) {
        if let [left, right] = pair {
            if compare("isSorted", *left, *right)? == Ordering::Greater {
                return boolean(false);
            }
        }
    }
    boolean(true)
}

fn list_sum<'b, 'v>(args: Args<'b, 'v>) -> Outcome<'b, 'v> {
    let items = elements("sum", &args, 0)?;
    let mut total: Option<Box<dyn Val + 'v>> = None;
    for item in items {
        total = Some(match total {
            None => {
                let summable = matches!(
                    item.get_type().kind(),
                    Kind::Int | Kind::UInt | Kind::Double | Kind::Duration
                );
                if !summable || item.as_adder().is_none() {
                    return Err(ExecutionError::no_such_member_overload(
                        "sum",
                        vec![format!("list({})", item.get_type().name())],
                    ));
                }
                item.clone_as_boxed()
            }
            Some(sum) => {
                let adder = sum.as_adder().ok_or_else(|| {
                    ExecutionError::no_such_member_overload(
                        "sum",
                        vec![format!("list({})", sum.get_type().name())],
                    )
                })?;
                adder.add(item)?.into_owned()
            }
        });
    }
    Ok(CowVal::Owned(
        total.unwrap_or_else(|| Box::new(CelInt::from(0))),
    ))
}

/// The first element no other element is preferred to: `prefer` is the ordering of the current
/// pick against a later element that makes the later element the pick.
fn extreme<'b, 'v>(function: &str, args: Args<'b, 'v>, prefer: Ordering) -> Outcome<'b, 'v> {
    let items = elements(function, &args, 0)?;
    let mut pick: Option<&(dyn Val + 'v)> = None;
    for item in items {
        pick = Some(match pick {
            None => {
                if item.as_comparer().is_none() {
                    return Err(ExecutionError::no_such_member_overload(
                        function,
                        vec![format!("list({})", item.get_type().name())],
                    ));
                }
                item
            }
            Some(current) if compare(function, current, item)? == prefer => item,
            Some(current) => current,
        });
    }
    match pick {
        Some(value) => Ok(CowVal::Owned(value.clone_as_boxed())),
        None => Err(ExecutionError::function_error(
            function,
            format!("{function} called on empty list"),
        )),
    }
}

fn list_min<'b, 'v>(args: Args<'b, 'v>) -> Outcome<'b, 'v> {
    extreme("min", args, Ordering::Greater)
}

fn list_max<'b, 'v>(args: Args<'b, 'v>) -> Outcome<'b, 'v> {
    extreme("max", args, Ordering::Less)
}

fn list_index_of<'b, 'v>(args: Args<'b, 'v>) -> Outcome<'b, 'v> {
    let items = elements("indexOf", &args, 0)?;
    let needle = args
        .get(1)
        .ok_or_else(|| ExecutionError::invalid_argument_count(2, args.len()))?;
    let found = items.iter().position(|item| item.equals(needle.as_ref()));
    integer(found.map_or(-1, |i| i64::try_from(i).unwrap_or(i64::MAX)))
}

fn list_last_index_of<'b, 'v>(args: Args<'b, 'v>) -> Outcome<'b, 'v> {
    let items = elements("lastIndexOf", &args, 0)?;
    let needle = args
        .get(1)
        .ok_or_else(|| ExecutionError::invalid_argument_count(2, args.len()))?;
    let found = items.iter().rposition(|item| item.equals(needle.as_ref()));
    integer(found.map_or(-1, |i| i64::try_from(i).unwrap_or(i64::MAX)))
}

// ---------------------------------------------------------------------------------------------
// Regex library

fn compile_regex(function: &str, pattern: &str) -> Result<regex::Regex, ExecutionError> {
    regex::Regex::new(pattern).map_err(|error| {
        ExecutionError::function_error(function, format!("Illegal regex: {error}"))
    })
}

fn find<'b, 'v>(args: Args<'b, 'v>) -> Outcome<'b, 'v> {
    let haystack = string_argument(&args, 0)?;
    let pattern = compile_regex("find", string_argument(&args, 1)?)?;
    text(
        pattern
            .find(haystack)
            .map(|m| m.as_str().to_string())
            .unwrap_or_default(),
    )
}

fn find_all<'b, 'v>(args: Args<'b, 'v>) -> Outcome<'b, 'v> {
    let haystack = string_argument(&args, 0)?;
    let pattern = compile_regex("findAll", string_argument(&args, 1)?)?;
    let limit = match args.get(2) {
        Some(_) => *argument::<CelInt>(&args, 2)?.inner(),
        None => -1,
    };
    let matches = pattern.find_iter(haystack).map(|m| m.as_str().to_string());
    let found: Vec<String> = match usize::try_from(limit) {
        Ok(limit) => matches.take(limit).collect(),
        Err(_) => matches.collect(),
    };
    let list: Vec<Box<dyn Val + 'v>> = found
        .into_iter()
        .map(|s| Box::new(CelString::from(s)) as Box<dyn Val + 'v>)
        .collect();
    Ok(CowVal::owned(CelList::from(list)))
}

// ---------------------------------------------------------------------------------------------
// Sets extension

/// Whether every element of `sub` equals some element of `set`.
fn contains_all(set: &[&dyn Val], sub: &[&dyn Val]) -> bool {
    sub.iter()
        .all(|item| set.iter().any(|element| element.equals(*item)))
}

fn sets_contains<'b, 'v>(args: Args<'b, 'v>) -> Outcome<'b, 'v> {
    let set = elements("sets.contains", &args, 0)?;
    let sub = elements("sets.contains", &args, 1)?;
    boolean(contains_all(&set, &sub))
}

fn sets_equivalent<'b, 'v>(args: Args<'b, 'v>) -> Outcome<'b, 'v> {
    let left = elements("sets.equivalent", &args, 0)?;
    let right = elements("sets.equivalent", &args, 1)?;
    boolean(contains_all(&left, &right) && contains_all(&right, &left))
}

fn sets_intersects<'b, 'v>(args: Args<'b, 'v>) -> Outcome<'b, 'v> {
    let left = elements("sets.intersects", &args, 0)?;
    let right = elements("sets.intersects", &args, 1)?;
    boolean(
        left.iter()
            .any(|item| right.iter().any(|element| element.equals(*item))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What an expression evaluates to.
    #[derive(Debug)]
    enum Want {
        Bool(bool),
        Int(i64),
        Str(&'static str),
        Strs(&'static [&'static str]),
        /// An evaluation error whose text contains this.
        Error(&'static str),
    }

    fn eval(source: &str) -> Result<cel::Value, String> {
        let env = env()?;
        let program = env.compile(source).map_err(|e| e.to_string())?;
        assert!(
            unsupported_calls(program.expression()).is_empty(),
            "{source} uses something unsupported: {:?}",
            unsupported_calls(program.expression())
        );
        program
            .execute(&cel::Context::with_env(env))
            .map_err(|e| e.to_string())
    }

    fn run(cases: &[(&str, Want)]) {
        for (source, want) in cases {
            let got = eval(source);
            let ok = match (want, &got) {
                (Want::Bool(b), Ok(cel::Value::Bool(v))) => b == v,
                (Want::Int(i), Ok(cel::Value::Int(v))) => i == v,
                (Want::Str(s), Ok(cel::Value::String(v))) => *s == v.as_str(),
                (Want::Strs(list), Ok(cel::Value::List(v))) => {
                    let got: Vec<String> = v
                        .iter()
                        .map(|item| match item {
                            cel::Value::String(s) => s.to_string(),
                            other => format!("{other:?}"),
                        })
                        .collect();
                    got == *list
                }
                (Want::Error(fragment), Err(error)) => error.contains(fragment),
                _ => false,
            };
            assert!(ok, "{source}: want {want:?}, got {got:?}");
        }
    }

    #[test]
    fn ip_library() {
        run(&[
            ("isIP('127.0.0.1')", Want::Bool(true)),
            ("isIP('::1')", Want::Bool(true)),
            ("isIP('127.0.0.256')", Want::Bool(false)),
            ("isIP(':::1')", Want::Bool(false)),
            ("isIP('010.0.0.1')", Want::Bool(false)),
            ("isIP('::ffff:1.2.3.4')", Want::Bool(false)),
            ("isIP('fe80::1%eth0')", Want::Bool(false)),
            ("isIP('')", Want::Bool(false)),
            ("isIP('1.2.3.4/32')", Want::Bool(false)),
            ("ip('127.0.0.256')", Want::Error("parse error")),
            (
                "ip('::ffff:1.2.3.4')",
                Want::Error("IPv4-mapped IPv6 address"),
            ),
            (
                "ip('fe80::1%eth0')",
                Want::Error("with zone value is not allowed"),
            ),
            ("ip('01.2.3.4')", Want::Error("parse error")),
            ("ip('127.0.0.1').family()", Want::Int(4)),
            ("ip('::1').family()", Want::Int(6)),
            ("ip('0.0.0.0').isUnspecified()", Want::Bool(true)),
            ("ip('::').isUnspecified()", Want::Bool(true)),
            ("ip('127.0.0.1').isUnspecified()", Want::Bool(false)),
            ("ip('127.0.0.1').isLoopback()", Want::Bool(true)),
            ("ip('127.255.0.9').isLoopback()", Want::Bool(true)),
            ("ip('::1').isLoopback()", Want::Bool(true)),
            ("ip('192.168.0.1').isLoopback()", Want::Bool(false)),
            ("ip('2001:db8::abcd').isLoopback()", Want::Bool(false)),
            ("ip('224.0.0.1').isLinkLocalMulticast()", Want::Bool(true)),
            ("ip('224.0.1.1').isLinkLocalMulticast()", Want::Bool(false)),
            ("ip('ff02::1').isLinkLocalMulticast()", Want::Bool(true)),
            ("ip('ff12::1').isLinkLocalMulticast()", Want::Bool(true)),
            ("ip('ff05::1').isLinkLocalMulticast()", Want::Bool(false)),
            ("ip('fd00::1').isLinkLocalMulticast()", Want::Bool(false)),
            (
                "ip('169.254.169.254').isLinkLocalUnicast()",
                Want::Bool(true),
            ),
            ("ip('192.168.0.1').isLinkLocalUnicast()", Want::Bool(false)),
            ("ip('fe80::1').isLinkLocalUnicast()", Want::Bool(true)),
            ("ip('febf::1').isLinkLocalUnicast()", Want::Bool(true)),
            ("ip('fec0::1').isLinkLocalUnicast()", Want::Bool(false)),
            ("ip('192.168.0.1').isGlobalUnicast()", Want::Bool(true)),
            ("ip('10.0.0.1').isGlobalUnicast()", Want::Bool(true)),
            ("ip('255.255.255.255').isGlobalUnicast()", Want::Bool(false)),
            ("ip('0.0.0.0').isGlobalUnicast()", Want::Bool(false)),
            ("ip('127.0.0.1').isGlobalUnicast()", Want::Bool(false)),
            ("ip('239.1.1.1').isGlobalUnicast()", Want::Bool(false)),
            ("ip('169.254.1.1').isGlobalUnicast()", Want::Bool(false)),
            ("ip('2001:db8::abcd').isGlobalUnicast()", Want::Bool(true)),
            ("ip('fd00::1').isGlobalUnicast()", Want::Bool(true)),
            ("ip('ff00::1').isGlobalUnicast()", Want::Bool(false)),
            ("ip('fe80::1').isGlobalUnicast()", Want::Bool(false)),
            ("ip.isCanonical('127.0.0.1')", Want::Bool(true)),
            ("ip.isCanonical('2001:db8::abcd')", Want::Bool(true)),
            ("ip.isCanonical('2001:DB8::ABCD')", Want::Bool(false)),
            ("ip.isCanonical('2001:db8::0:0:0:abcd')", Want::Bool(false)),
            ("ip.isCanonical('2001:db8:0:0:1:0:0:1')", Want::Bool(false)),
            ("ip.isCanonical('2001:db8::1:0:0:1')", Want::Bool(true)),
            ("ip.isCanonical('bad')", Want::Error("parse error")),
            ("string(ip('2001:DB8::0:1'))", Want::Str("2001:db8::1")),
            ("string(ip('10.1.2.3'))", Want::Str("10.1.2.3")),
            ("string(ip('::1.2.3.4'))", Want::Str("::102:304")),
            ("string(ip('0:0:0:0:0:0:0:0'))", Want::Str("::")),
            ("string(ip('1:0:0:2:0:0:0:3'))", Want::Str("1:0:0:2::3")),
            (
                "string(ip('1:0:2:0:3:0:4:0'))",
                Want::Str("1:0:2:0:3:0:4:0"),
            ),
            ("ip.isCanonical('::1.2.3.4')", Want::Bool(false)),
            ("ip('2001:db8::1') == ip('2001:DB8:0::1')", Want::Bool(true)),
            ("ip('10.0.0.1') == ip('10.0.0.2')", Want::Bool(false)),
            ("ip('10.0.0.1') != ip('10.0.0.2')", Want::Bool(true)),
            ("type(ip('10.0.0.1')) == net.IP", Want::Bool(true)),
            ("ip(1)", Want::Error("found no matching overload for 'ip'")),
        ]);
    }

    #[test]
    fn cidr_library() {
        run(&[
            ("isCIDR('192.168.0.0/16')", Want::Bool(true)),
            ("isCIDR('::1/128')", Want::Bool(true)),
            ("isCIDR('192.168.0.1/16')", Want::Bool(true)),
            ("isCIDR('192.168.0.0/33')", Want::Bool(false)),
            ("isCIDR('::1/129')", Want::Bool(false)),
            ("isCIDR('192.168.0.0')", Want::Bool(false)),
            ("isCIDR('192.168.0.0/')", Want::Bool(false)),
            ("isCIDR('192.168.0.0/08')", Want::Bool(false)),
            ("isCIDR('192.168.0.0/+8')", Want::Bool(false)),
            ("isCIDR('0.0.0.0/0')", Want::Bool(true)),
            ("isCIDR('::ffff:1.2.3.0/120')", Want::Bool(false)),
            ("isCIDR('fe80::%eth0/64')", Want::Bool(false)),
            ("isCIDR('010.0.0.0/8')", Want::Bool(false)),
            ("cidr('192.168.0.0/')", Want::Error("bad bits after slash")),
            (
                "cidr('192.168.0.0/33')",
                Want::Error("prefix length out of range"),
            ),
            (
                "cidr('::ffff:1.2.3.0/120')",
                Want::Error("IPv4-mapped IPv6 address"),
            ),
            (
                "cidr('192.168.0.0/24').containsIP(ip('192.168.0.1'))",
                Want::Bool(true),
            ),
            (
                "cidr('192.168.0.0/24').containsIP(ip('192.168.1.1'))",
                Want::Bool(false),
            ),
            (
                "cidr('192.168.0.0/24').containsIP('192.168.0.1')",
                Want::Bool(true),
            ),
            (
                "cidr('192.168.0.0/24').containsIP('192.168.1.1')",
                Want::Bool(false),
            ),
            (
                "cidr('192.168.0.7/24').containsIP('192.168.0.200')",
                Want::Bool(true),
            ),
            ("cidr('0.0.0.0/0').containsIP('8.8.8.8')", Want::Bool(true)),
            ("cidr('0.0.0.0/0').containsIP('::1')", Want::Bool(false)),
            (
                "cidr('2001:db8::/32').containsIP('2001:db8::1')",
                Want::Bool(true),
            ),
            (
                "cidr('2001:db8::/32').containsIP('2001:dc8::1')",
                Want::Bool(false),
            ),
            (
                "cidr('10.0.0.0/8').containsIP('bad')",
                Want::Error("parse error"),
            ),
            (
                "cidr('192.168.0.0/24').containsCIDR(cidr('192.168.0.0/25'))",
                Want::Bool(true),
            ),
            (
                "cidr('192.168.0.0/24').containsCIDR(cidr('192.168.0.0/23'))",
                Want::Bool(false),
            ),
            (
                "cidr('192.168.0.0/24').containsCIDR('192.168.0.0/25')",
                Want::Bool(true),
            ),
            (
                "cidr('192.168.0.0/16').containsCIDR('192.168.10.0/24')",
                Want::Bool(true),
            ),
            (
                "cidr('192.168.1.0/24').containsCIDR('192.168.2.0/24')",
                Want::Bool(false),
            ),
            (
                "cidr('192.168.0.0/16').containsCIDR('192.168.0.1/32')",
                Want::Bool(true),
            ),
            (
                "cidr('2001:db8::/32').containsCIDR('2001:db8::/33')",
                Want::Bool(true),
            ),
            (
                "cidr('2001:db8::/32').containsCIDR('2001:db8::/31')",
                Want::Bool(false),
            ),
            ("cidr('10.0.0.0/8').containsCIDR('::/0')", Want::Bool(false)),
            (
                "cidr('10.0.0.0/8').containsCIDR('10.0.0.0')",
                Want::Error("no '/'"),
            ),
            (
                "cidr('192.168.0.0/24').ip() == ip('192.168.0.0')",
                Want::Bool(true),
            ),
            (
                "cidr('192.168.0.1/24').ip() == ip('192.168.0.1')",
                Want::Bool(true),
            ),
            ("cidr('::1/128').ip().family()", Want::Int(6)),
            (
                "cidr('192.168.0.1/24').masked() == cidr('192.168.0.0/24')",
                Want::Bool(true),
            ),
            (
                "cidr('192.168.0.0/24') == cidr('192.168.0.0/24').masked()",
                Want::Bool(true),
            ),
            (
                "cidr('192.168.0.1/24') == cidr('192.168.0.1/24').masked()",
                Want::Bool(false),
            ),
            (
                "cidr('2001:db8:1::/32').masked() == cidr('2001:db8::/32')",
                Want::Bool(true),
            ),
            (
                "cidr('0.0.0.0/0').masked() == cidr('0.0.0.0/0')",
                Want::Bool(true),
            ),
            ("cidr('192.168.0.0/16').prefixLength()", Want::Int(16)),
            ("cidr('::1/128').prefixLength()", Want::Int(128)),
            (
                "string(cidr('192.168.0.0/24'))",
                Want::Str("192.168.0.0/24"),
            ),
            (
                "string(cidr('192.168.0.1/24'))",
                Want::Str("192.168.0.1/24"),
            ),
            ("string(cidr('2001:DB8::/32'))", Want::Str("2001:db8::/32")),
            (
                "string(cidr('192.168.0.1/24').masked())",
                Want::Str("192.168.0.0/24"),
            ),
            ("type(cidr('10.0.0.0/8')) == net.CIDR", Want::Bool(true)),
            ("cidr('10.0.0.0/8') == ip('10.0.0.0')", Want::Bool(false)),
        ]);
    }

    #[test]
    fn lists_library() {
        run(&[
            ("[1, 2, 3].isSorted()", Want::Bool(true)),
            ("['a', 'b', 'b', 'c'].isSorted()", Want::Bool(true)),
            ("[2.0, 1.0].isSorted()", Want::Bool(false)),
            ("[].isSorted()", Want::Bool(true)),
            ("[1, 3].sum()", Want::Int(4)),
            ("[].sum()", Want::Int(0)),
            ("[1.0, 3.0].sum() == 4.0", Want::Bool(true)),
            (
                "[duration('1m'), duration('1s')].sum() == duration('61s')",
                Want::Bool(true),
            ),
            ("['a'].sum() == 'a'", Want::Error("no matching overload")),
            ("[9223372036854775807, 1].sum()", Want::Error("Overflow")),
            ("[1, 3].min()", Want::Int(1)),
            ("[1, 3].max()", Want::Int(3)),
            ("['b', 'a', 'c'].min()", Want::Str("a")),
            ("['b', 'a', 'c'].max()", Want::Str("c")),
            ("[].min()", Want::Error("min called on empty list")),
            ("[].max()", Want::Error("max called on empty list")),
            ("[1, 2, 2, 3].indexOf(2)", Want::Int(1)),
            ("['a', 'b', 'b', 'c'].lastIndexOf('b')", Want::Int(2)),
            ("[1.0].indexOf(1.1)", Want::Int(-1)),
            ("[].indexOf('string')", Want::Int(-1)),
            ("[].lastIndexOf('string')", Want::Int(-1)),
            (
                "[ip('10.0.0.1'), ip('::1')].indexOf(ip('::1'))",
                Want::Int(1),
            ),
        ]);
    }

    #[test]
    fn regex_library() {
        run(&[
            ("'abc 123'.find('[0-9]+')", Want::Str("123")),
            ("'abc 123'.find('xyz')", Want::Str("")),
            (
                "'123 abc 456'.findAll('[0-9]+')",
                Want::Strs(&["123", "456"]),
            ),
            ("'123 abc 456'.findAll('[0-9]+', 1)", Want::Strs(&["123"])),
            ("'123 abc 456'.findAll('[0-9]+', 0)", Want::Strs(&[])),
            (
                "'123 abc 456'.findAll('[0-9]+', -1)",
                Want::Strs(&["123", "456"]),
            ),
            ("'123 abc 456'.findAll('xyz')", Want::Strs(&[])),
            ("'abc'.find('[')", Want::Error("Illegal regex")),
            ("'abc'.findAll('(')", Want::Error("Illegal regex")),
        ]);
    }

    #[test]
    fn strings_extension() {
        run(&[
            ("'hello'.charAt(1)", Want::Str("e")),
            ("'hello'.charAt(5)", Want::Str("")),
            ("'hello'.charAt(6)", Want::Error("index out of range")),
            ("'hello mellow'.indexOf('ello')", Want::Int(1)),
            ("'hello mellow'.indexOf('ello', 2)", Want::Int(7)),
            ("'hello mellow'.lastIndexOf('ello')", Want::Int(7)),
            ("'TacoCat'.lowerAscii()", Want::Str("tacocat")),
            ("'TacoCat'.upperAscii()", Want::Str("TACOCAT")),
            (
                "'hello hello'.replace('he', 'we')",
                Want::Str("wello wello"),
            ),
            (
                "'hello hello'.replace('he', 'we', 1)",
                Want::Str("wello hello"),
            ),
            ("'a,b,c'.split(',')", Want::Strs(&["a", "b", "c"])),
            ("'a,b,c'.split(',', 2)", Want::Strs(&["a", "b,c"])),
            ("'tacocat'.substring(4)", Want::Str("cat")),
            ("'tacocat'.substring(0, 4)", Want::Str("taco")),
            ("'tacocat'.substring(8)", Want::Error("index out of range")),
            ("'  trim  '.trim()", Want::Str("trim")),
            ("['a', 'b'].join()", Want::Str("ab")),
            ("['a', 'b'].join('-')", Want::Str("a-b")),
            ("strings.quote('a\"b')", Want::Str("\"a\\\"b\"")),
        ]);
    }

    #[test]
    fn quantity_library() {
        run(&[
            ("isQuantity('1.3G')", Want::Bool(true)),
            ("isQuantity('1.3Gi')", Want::Bool(true)),
            ("isQuantity('1,3G')", Want::Bool(false)),
            ("isQuantity('10000k')", Want::Bool(true)),
            ("isQuantity('200K')", Want::Bool(false)),
            ("isQuantity('Three')", Want::Bool(false)),
            ("isQuantity('Mi')", Want::Bool(false)),
            (
                "quantity('200K')",
                Want::Error("unable to parse quantity's suffix"),
            ),
            ("quantity('Mi')", Want::Error("quantities must match")),
            ("quantity('50000000G').isInteger()", Want::Bool(true)),
            ("quantity('50k').isInteger()", Want::Bool(true)),
            ("quantity('1.5').isInteger()", Want::Bool(false)),
            (
                "quantity('9999999999999999999999999999999999999G').isInteger()",
                Want::Bool(false),
            ),
            (
                "quantity('9999999999999999999999999999999999999G').asInteger()",
                Want::Error("cannot convert value to integer"),
            ),
            ("quantity('50k').asInteger() == 50000", Want::Bool(true)),
            (
                "quantity('-9223372036854775808').asInteger()",
                Want::Int(i64::MIN),
            ),
            (
                "quantity('9223372036854775808').isInteger()",
                Want::Bool(false),
            ),
            (
                "quantity('50k').sub(20000).asApproximateFloat() == 30000.0",
                Want::Bool(true),
            ),
            (
                "quantity('1m').asApproximateFloat() == 0.001",
                Want::Bool(true),
            ),
            (
                "quantity('50k').add(quantity('20k')) == quantity('70k')",
                Want::Bool(true),
            ),
            (
                "quantity('50k').add(20) == quantity('50020')",
                Want::Bool(true),
            ),
            (
                "quantity('50k').sub(quantity('20k')) == quantity('30k')",
                Want::Bool(true),
            ),
            (
                "quantity('50k').sub(20000) == quantity('30k')",
                Want::Bool(true),
            ),
            (
                "quantity('50k').add(20).sub(quantity('100k')).sub(-50000) == quantity('20')",
                Want::Bool(true),
            ),
            ("quantity('1').sub(3).sign()", Want::Int(-1)),
            ("quantity('200M').compareTo(quantity('0.2G'))", Want::Int(0)),
            ("quantity('50M').compareTo(quantity('50Mi'))", Want::Int(-1)),
            ("quantity('50Mi').compareTo(quantity('50M'))", Want::Int(1)),
            ("quantity('-1').compareTo(quantity('-2'))", Want::Int(1)),
            (
                "quantity('150Mi').isGreaterThan(quantity('100Mi'))",
                Want::Bool(true),
            ),
            (
                "quantity('50Mi').isGreaterThan(quantity('100Mi'))",
                Want::Bool(false),
            ),
            (
                "quantity('50M').isLessThan(quantity('100M'))",
                Want::Bool(true),
            ),
            (
                "quantity('100M').isLessThan(quantity('50M'))",
                Want::Bool(false),
            ),
            ("quantity('200M') == quantity('0.2G')", Want::Bool(true)),
            ("quantity('1Ki') == quantity('1k')", Want::Bool(false)),
            ("sign(quantity('0'))", Want::Int(0)),
            (
                "type(quantity('1')) == kubernetes.Quantity",
                Want::Bool(true),
            ),
        ]);
    }

    #[test]
    fn url_library() {
        run(&[
            ("isURL('https://user:pass@example.com:80/path?query=val#fragment')", Want::Bool(true)),
            ("isURL('/absolute-path')", Want::Bool(true)),
            ("isURL('https://a:b:c/')", Want::Bool(false)),
            ("isURL('../relative-path')", Want::Bool(false)),
            ("url('../relative-path')", Want::Error("invalid URI for request")),
            ("url('https://a:b:c/')", Want::Error("invalid port")),
            ("url('/path').getScheme()", Want::Str("")),
            ("url('https://example.com/').getScheme()", Want::Str("https")),
            ("url('https://example.com:80/').getHost()", Want::Str("example.com:80")),
            ("url('https://example.com/').getHost()", Want::Str("example.com")),
            ("url('https://[::1]:80/').getHost()", Want::Str("[::1]:80")),
            ("url('https://[::1]/').getHost()", Want::Str("[::1]")),
            ("url('/path').getHost()", Want::Str("")),
            ("url('https://example.com:80/').getHostname()", Want::Str("example.com")),
            ("url('https://127.0.0.1:80/').getHostname()", Want::Str("127.0.0.1")),
            ("url('https://[::1]:80/').getHostname()", Want::Str("::1")),
            ("url('/path').getHostname()", Want::Str("")),
            ("url('https://example.com:80/').getPort()", Want::Str("80")),
            ("url('https://example.com/').getPort()", Want::Str("")),
            ("url('/path').getPort()", Want::Str("")),
            ("url('https://example.com/path').getEscapedPath()", Want::Str("/path")),
            (
                "url('https://example.com/path with spaces/').getEscapedPath()",
                Want::Str("/path%20with%20spaces/"),
            ),
            ("url('https://example.com').getEscapedPath()", Want::Str("")),
            (
                "url('https://example.com/path?k1=a&k2=b&k2=c').getQuery() == {'k1': ['a'], 'k2': ['b', 'c']}",
                Want::Bool(true),
            ),
            (
                "url('https://example.com/path?key with spaces=value with spaces').getQuery() == {'key with spaces': ['value with spaces']}",
                Want::Bool(true),
            ),
            ("url('https://example.com/path?').getQuery() == {}", Want::Bool(true)),
            ("url('https://example.com/path').getQuery() == {}", Want::Bool(true)),
            ("url('https://example.com/#f').getEscapedPath()", Want::Str("/")),
            ("url('/a') == url('/a') && url('/a') != url('/b')", Want::Bool(true)),
            ("type(url('/a')) == kubernetes.URL", Want::Bool(true)),
        ]);
    }

    #[test]
    fn format_library() {
        run(&[
            ("format.named('dns1123Label').hasValue()", Want::Bool(true)),
            ("format.named('nope').hasValue()", Want::Bool(false)),
            ("format.named('dns1123Label').value() == format.dns1123Label()", Want::Bool(true)),
            ("format.dns1123Label().validate('my-label-name').hasValue()", Want::Bool(false)),
            (
                "format.dns1123Label().validate('My_Name').value()",
                Want::Strs(&["a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"]),
            ),
            ("format.dns1123Label().validate('a.b').value()", Want::Strs(&["must not contain dots"])),
            (
                "format.dns1123Label().validate('aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa').value()",
                Want::Strs(&["must be no more than 63 characters"]),
            ),
            ("format.dns1123Subdomain().validate('apiextensions.k8s.io').hasValue()", Want::Bool(false)),
            (
                "format.dns1123Subdomain().validate('-a').value()",
                Want::Strs(&["a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"]),
            ),
            ("format.dns1035Label().validate('my-label-name').hasValue()", Want::Bool(false)),
            ("format.dns1035Label().validate('1abc').hasValue()", Want::Bool(true)),
            ("format.qualifiedName().validate('apiextensions.k8s.io/v1beta1').hasValue()", Want::Bool(false)),
            (
                "format.qualifiedName().validate('/a').value()",
                Want::Strs(&["prefix part must be non-empty"]),
            ),
            ("format.qualifiedName().validate('a/b/c').value().size()", Want::Int(1)),
            ("format.dns1123LabelPrefix().validate('my-label-prefix-').hasValue()", Want::Bool(false)),
            ("format.dns1123Label().validate('my-label-prefix-').hasValue()", Want::Bool(true)),
            ("format.dns1123SubdomainPrefix().validate('mysubdomain.prefix.-').hasValue()", Want::Bool(false)),
            ("format.dns1035LabelPrefix().validate('my-label-prefix-').hasValue()", Want::Bool(false)),
            ("format.labelValue().validate('').hasValue()", Want::Bool(false)),
            ("format.labelValue().validate('-a').hasValue()", Want::Bool(true)),
            ("format.uri().validate('http://example.com').hasValue()", Want::Bool(false)),
            (
                "format.uri().validate('../a').value()",
                Want::Strs(&["parse \"../a\": invalid URI for request"]),
            ),
            ("format.uuid().validate('123e4567-e89b-12d3-a456-426614174000').hasValue()", Want::Bool(false)),
            ("format.uuid().validate('123E4567E89B12D3A456426614174000').hasValue()", Want::Bool(false)),
            ("format.uuid().validate('nope').value()", Want::Strs(&["does not match the UUID format"])),
            ("format.byte().validate('aGVsbG8=').hasValue()", Want::Bool(false)),
            ("format.byte().validate('!').value()", Want::Strs(&["invalid base64"])),
            ("format.date().validate('2021-01-01').hasValue()", Want::Bool(false)),
            ("format.date().validate('2021-13-01').value()", Want::Strs(&["invalid date"])),
            ("format.datetime().validate('2021-01-01T00:00:00Z').hasValue()", Want::Bool(false)),
            ("format.datetime().validate('yesterday').value()", Want::Strs(&["invalid datetime"])),
        ]);
    }

    #[test]
    fn two_variable_comprehensions() {
        run(&[
            ("[1, 2, 3].all(i, v, v > i)", Want::Bool(true)),
            ("[1, 2].all(i, v, i < 1)", Want::Bool(false)),
            (
                "{'a': 1, 'b': 2}.all(k, v, k != '' && v > 0)",
                Want::Bool(true),
            ),
            ("[1, 2].exists(i, v, i == 1 && v == 2)", Want::Bool(true)),
            ("[1, 2].exists(i, v, i == 1 && v == 1)", Want::Bool(false)),
            ("[1, 2, 3].existsOne(i, v, v > 2)", Want::Bool(true)),
            ("[1, 2, 3].existsOne(i, v, v > 1)", Want::Bool(false)),
            (
                "[1, 2].transformList(i, v, i + v) == [1, 3]",
                Want::Bool(true),
            ),
            (
                "[1, 2, 3].transformList(i, v, v % 2 == 1, v * 10) == [10, 30]",
                Want::Bool(true),
            ),
            (
                "{'b': 2, 'a': 1}.transformList(k, v, k)",
                Want::Strs(&["a", "b"]),
            ),
            (
                "{'a': 1, 'b': 2}.transformMap(k, v, v * 2) == {'a': 2, 'b': 4}",
                Want::Bool(true),
            ),
            (
                "{'a': 1, 'b': 2}.transformMap(k, v, v > 1, v) == {'b': 2}",
                Want::Bool(true),
            ),
            (
                "['x', 'y'].transformMap(i, v, v) == {0: 'x', 1: 'y'}",
                Want::Bool(true),
            ),
            (
                "{'a': 'b'}.transformMapEntry(k, v, {v: k}) == {'b': 'a'}",
                Want::Bool(true),
            ),
            (
                "{'a': 1, 'b': 2}.transformMapEntry(k, v, v > 1, {k + k: v}) == {'bb': 2}",
                Want::Bool(true),
            ),
            (
                "{'a': 'x', 'b': 'x'}.transformMapEntry(k, v, {v: k})",
                Want::Error("already exists"),
            ),
            (
                "[[1, 2], [3]].all(i, l, l.all(j, x, x > i + j))",
                Want::Bool(true),
            ),
            (
                "[1].all(i, v, [5].all(i, v, v == 5) && v == 1)",
                Want::Bool(true),
            ),
            (
                "[].all(i, v, false) && !{}.exists(k, v, true)",
                Want::Bool(true),
            ),
            ("1.all(i, v, true)", Want::Error("no matching overload")),
        ]);
        let env = env().unwrap_or_else(|e| panic!("{e}"));
        assert!(
            env.compile("[1].all(i, i, true)").is_err(),
            "duplicate names"
        );
        assert!(
            env.compile("[1].all(i + 1, v, true)").is_err(),
            "not a name"
        );
    }

    #[test]
    fn sets_extension() {
        run(&[
            ("sets.contains([1, 2, 3], [2, 3])", Want::Bool(true)),
            ("sets.contains([1, 2], [2, 3])", Want::Bool(false)),
            ("sets.contains([1], [])", Want::Bool(true)),
            ("sets.equivalent([1, 2, 2], [2, 1])", Want::Bool(true)),
            ("sets.equivalent([1, 2], [1])", Want::Bool(false)),
            ("sets.intersects([1, 2], [2, 3])", Want::Bool(true)),
            ("sets.intersects([1], [3])", Want::Bool(false)),
        ]);
    }

    #[test]
    fn only_provided_calls_pass_the_check() {
        let env = env().unwrap_or_else(|e| panic!("{e}"));
        let cases: [(&str, &[&str]); 8] = [
            ("isCIDR(self.a) && cidr(self.a).containsIP(self.b)", &[]),
            ("self.all(x, x.startsWith('a'))", &[]),
            ("self.items.exists(i, i.name == oldSelf.name)", &[]),
            ("type(self) == string && self.matches('^a')", &[]),
            ("self.reverse() == 'a'", &["unsupported function: reverse"]),
            (
                "isSemver(self) && self.sortBy(x, x) == []",
                &[
                    "undeclared reference: x",
                    "unsupported function: isSemver",
                    "unsupported function: sortBy",
                ],
            ),
            ("foo == 1", &["undeclared reference: foo"]),
            (
                "math.greatest(1, 2) == 2",
                &[
                    "undeclared reference: math",
                    "unsupported function: greatest",
                ],
            ),
        ];
        for (source, want) in cases {
            let program = env
                .compile(source)
                .unwrap_or_else(|e| panic!("{source}: {e}"));
            assert_eq!(unsupported_calls(program.expression()), want, "{source}");
        }
    }
}

#[cfg(test)]
mod provided {
    use super::*;

    /// One expression per allowed function that evaluates to `true`: every name the call check
    /// lets through is really provided.
    const EVERY_FUNCTION: &[&str] = &[
        "size('abc') == 3 && 'abc'.size() == 3",
        "int('7') == 7 && uint(7) == 7u && double(1) == 1.0",
        "string(1) == '1' && bool('true') && bytes('a') == b'a'",
        "dyn(1) == 1 && type(1) == int",
        "duration('1m').getSeconds() == 60 && duration('1500ms').getMilliseconds() == 1500",
        "duration('2h').getHours() == 2 && duration('3m').getMinutes() == 3",
        "timestamp('2024-02-03T04:05:06Z').getFullYear() == 2024",
        "timestamp('2024-02-03T04:05:06Z').getMonth() == 1",
        "timestamp('2024-02-03T04:05:06Z').getDate() == 3",
        "timestamp('2024-02-03T04:05:06Z').getDayOfMonth() == 2",
        "timestamp('2024-02-03T04:05:06Z').getDayOfWeek() == 6",
        "timestamp('2024-02-03T04:05:06Z').getDayOfYear() == 33",
        "timestamp('2024-02-03T04:05:06Z').getHours() == 4",
        "timestamp('2024-02-03T04:05:06Z').getMinutes() == 5",
        "timestamp('2024-02-03T04:05:06Z').getSeconds() == 6",
        "timestamp('2024-02-03T04:05:06.007Z').getMilliseconds() == 7",
        "matches('abc', '^a') && 'abc'.matches('c$')",
        "'abc'.contains('b') && 'abc'.startsWith('a') && 'abc'.endsWith('c')",
        "!optional.none().hasValue() && optional.of(1).value() == 1",
        "!optional.ofNonZeroValue(0).hasValue()",
        "optional.none().or(optional.of(2)).value() == 2 && optional.none().orValue(3) == 3",
        "'abc'.charAt(0) == 'a' && 'abc'.indexOf('c') == 2 && 'abca'.lastIndexOf('a') == 3",
        "'A'.lowerAscii() == 'a' && 'a'.upperAscii() == 'A' && ' a '.trim() == 'a'",
        "'aa'.replace('a', 'b') == 'bb' && 'a,b'.split(',') == ['a', 'b']",
        "'abc'.substring(1) == 'bc' && ['a', 'b'].join('') == 'ab'",
        "'%s-%d'.format(['a', 1]) == 'a-1' && strings.quote('a') == '\"a\"'",
        "[1, 2].isSorted() && [1, 2].sum() == 3 && [1, 2].min() == 1 && [1, 2].max() == 2",
        "[1, 2].indexOf(2) == 1 && [2, 2].lastIndexOf(2) == 1",
        "'a1'.find('[0-9]') == '1' && 'a1b2'.findAll('[0-9]') == ['1', '2']",
        "sets.contains([1], [1]) && sets.equivalent([1], [1]) && sets.intersects([1], [1])",
        "isIP('::1') && ip('::1').family() == 6 && ip.isCanonical('::1')",
        "ip('::').isUnspecified() && ip('::1').isLoopback() && ip('ff02::1').isLinkLocalMulticast()",
        "ip('fe80::1').isLinkLocalUnicast() && ip('2001:db8::1').isGlobalUnicast()",
        "isCIDR('10.0.0.0/8') && cidr('10.0.0.0/8').containsIP('10.1.1.1')",
        "cidr('10.0.0.0/8').containsCIDR('10.1.0.0/16') && cidr('10.0.0.1/8').ip() == ip('10.0.0.1')",
        "cidr('10.0.0.1/8').masked().prefixLength() == 8",
        "isQuantity('1Gi') && quantity('1Gi').isInteger() && quantity('1k').asInteger() == 1000",
        "quantity('1.5').asApproximateFloat() == 1.5 && sign(quantity('-1')) == -1",
        "quantity('1').sign() == 1 && quantity('1k').compareTo(quantity('1000')) == 0",
        "quantity('2').isGreaterThan(quantity('1')) && quantity('1').isLessThan(quantity('2'))",
        "quantity('1').add(1) == quantity('2') && quantity('1').sub(quantity('1')).sign() == 0",
        "isURL('/a') && url('https://h:1/p').getScheme() == 'https'",
        "url('https://h:1/p').getHost() == 'h:1' && url('https://h:1/p').getHostname() == 'h'",
        "url('https://h:1/p').getPort() == '1' && url('https://h/a b').getEscapedPath() == '/a%20b'",
        "url('https://h/?a=1&a=2').getQuery() == {'a': ['1', '2']}",
        "!format.dns1123Label().validate('a').hasValue() && format.named('uri').hasValue()",
        "format.dns1123Subdomain().validate('a.b') == optional.none()",
        "format.dns1035Label().validate('a') == optional.none()",
        "format.qualifiedName().validate('a/b') == optional.none()",
        "format.dns1123LabelPrefix().validate('a-') == optional.none()",
        "format.dns1123SubdomainPrefix().validate('a.b-') == optional.none()",
        "format.dns1035LabelPrefix().validate('a-') == optional.none()",
        "format.labelValue().validate('') == optional.none()",
        "format.uri().validate('/a') == optional.none()",
        "format.uuid().validate('123e4567-e89b-12d3-a456-426614174000') == optional.none()",
        "format.byte().validate('aGVsbG8=') == optional.none()",
        "format.date().validate('2021-01-01') == optional.none()",
        "format.datetime().validate('2021-01-01T00:00:00Z') == optional.none()",
    ];

    #[test]
    fn every_allowed_function_is_provided() {
        let env = env().unwrap_or_else(|e| panic!("{e}"));
        let mut called = Vec::new();
        for source in EVERY_FUNCTION {
            let program = env
                .compile(source)
                .unwrap_or_else(|e| panic!("{source}: {e}"));
            assert!(
                unsupported_calls(program.expression()).is_empty(),
                "{source}: {:?}",
                unsupported_calls(program.expression())
            );
            let result = program.execute(&cel::Context::with_env(Arc::clone(&env)));
            assert_eq!(result, Ok(cel::Value::Bool(true)), "{source}");
            called.extend(
                program
                    .references()
                    .functions()
                    .into_iter()
                    .map(str::to_string),
            );
            called.extend(
                program
                    .references()
                    .variables()
                    .into_iter()
                    .map(str::to_string),
            );
        }
        for name in GLOBAL_FUNCTIONS.iter().chain(MEMBER_FUNCTIONS) {
            let last = name.rsplit('.').next().unwrap_or(name);
            assert!(
                called.iter().any(|c| c == last),
                "{name} is allowed but no test calls it"
            );
        }
    }
}
