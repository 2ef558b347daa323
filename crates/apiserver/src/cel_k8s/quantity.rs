//! Kubernetes' quantity library (`quantity`, `isQuantity`, `sign`, `isInteger`, `asInteger`,
//! `asApproximateFloat`, `add`, `sub`, `compareTo`, `isGreaterThan`, `isLessThan`, equality)
//! over an exact decimal: a quantity is a whole number of nano-units, as `resource.Quantity`
//! rounds every parsed value up to the next nano.

use std::any::Any;
use std::cmp::Ordering;

use cel::common::types::{CelBool, CelDouble, CelInt, Type, INT_TYPE, STRING_TYPE};
use cel::common::value::{CowVal, StaticVal, Val};
use cel::{DeclarationError, Env, ExecutionError};

use super::{argument, string_argument, Args, Outcome};

/// The CEL type of `quantity(…)` values, as Kubernetes names it.
static QUANTITY_TYPE: Type = Type::new_unspecified_type("kubernetes.Quantity");

/// One limb of [`Natural`]: nine decimal digits.
const LIMB: u64 = 1_000_000_000;

/// The largest magnitude this stand-in parses, in decimal digits of nano-units (Kubernetes has
/// no bound; this one keeps a `1e999999999` from costing memory).
const MAX_DIGITS: usize = 400;

/// A natural number in base 10⁹, least significant limb first, without high zero limbs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Natural(Vec<u32>);

impl Natural {
    fn from_u128(mut value: u128) -> Self {
        let mut limbs = Vec::new();
        while value > 0 {
            limbs.push((value % u128::from(LIMB)) as u32);
            value /= u128::from(LIMB);
        }
        Self(limbs)
    }

    fn is_zero(&self) -> bool {
        self.0.is_empty()
    }

    fn trim(&mut self) {
        while self.0.last() == Some(&0) {
            self.0.pop();
        }
    }

    /// `self * factor + carry`.
    fn mul_add_small(&mut self, factor: u32, carry: u32) {
        let mut carry = u64::from(carry);
        for limb in &mut self.0 {
            let wide = u64::from(*limb) * u64::from(factor) + carry;
            *limb = (wide % LIMB) as u32;
            carry = wide / LIMB;
        }
        while carry > 0 {
            self.0.push((carry % LIMB) as u32);
            carry /= LIMB;
        }
        self.trim();
    }

    /// `self / divisor`, and whether anything was left over.
    fn div_small(&mut self, divisor: u32) -> bool {
        let mut remainder = 0u64;
        for limb in self.0.iter_mut().rev() {
            let wide = remainder * LIMB + u64::from(*limb);
            *limb = (wide / u64::from(divisor)) as u32;
            remainder = wide % u64::from(divisor);
        }
        self.trim();
        remainder != 0
    }

    fn add(&self, other: &Self) -> Self {
        let mut out = Vec::with_capacity(self.0.len().max(other.0.len()) + 1);
        let mut carry = 0u64;
        for i in 0..self.0.len().max(other.0.len()) {
            let sum = u64::from(self.0.get(i).copied().unwrap_or(0))
                + u64::from(other.0.get(i).copied().unwrap_or(0))
                + carry;
            out.push((sum % LIMB) as u32);
            carry = sum / LIMB;
        }
        if carry > 0 {
            out.push(carry as u32);
        }
        let mut natural = Self(out);
        natural.trim();
        natural
    }

    /// `self - other`, for `self >= other`.
    fn sub(&self, other: &Self) -> Self {
        let mut out = Vec::with_capacity(self.0.len());
        let mut borrow = 0i64;
        for i in 0..self.0.len() {
            let mut difference = i64::from(self.0.get(i).copied().unwrap_or(0))
                - i64::from(other.0.get(i).copied().unwrap_or(0))
                - borrow;
            borrow = 0;
            if difference < 0 {
                difference += LIMB as i64;
                borrow = 1;
            }
            out.push(difference as u32);
        }
        let mut natural = Self(out);
        natural.trim();
        natural
    }

    fn cmp(&self, other: &Self) -> Ordering {
        self.0
            .len()
            .cmp(&other.0.len())
            .then_with(|| self.0.iter().rev().cmp(other.0.iter().rev()))
    }

    /// The value as a `u128`, if it fits.
    fn to_u128(&self) -> Option<u128> {
        self.0.iter().rev().try_fold(0u128, |acc, limb| {
            acc.checked_mul(u128::from(LIMB))?
                .checked_add(u128::from(*limb))
        })
    }

    /// Decimal digits.
    fn to_decimal(&self) -> String {
        let mut limbs = self.0.iter().rev();
        let Some(first) = limbs.next() else {
            return "0".into();
        };
        let mut out = first.to_string();
        for limb in limbs {
            out.push_str(&format!("{limb:09}"));
        }
        out
    }

    fn digits(&self) -> usize {
        self.0.len() * 9
    }
}

/// A `quantity(…)` value: `negative`, and a magnitude in nano-units.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Quantity {
    negative: bool,
    nanos: Natural,
}

impl Val for Quantity {
    fn get_type(&self) -> &Type {
        &QUANTITY_TYPE
    }

    fn cel_type() -> &'static Type {
        &QUANTITY_TYPE
    }

    fn equals(&self, other: &dyn Val) -> bool {
        other
            .downcast_ref::<Self>()
            .is_some_and(|o| o.cmp(self) == Ordering::Equal)
    }

    fn clone_as_boxed<'v>(&self) -> Box<dyn Val + 'v> {
        Box::new(self.clone())
    }

    fn as_any(&self) -> Option<&dyn Any> {
        Some(self)
    }
}

impl StaticVal for Quantity {}

impl Quantity {
    fn new(negative: bool, nanos: Natural) -> Self {
        Self {
            negative: negative && !nanos.is_zero(),
            nanos,
        }
    }

    fn from_int(value: i64) -> Self {
        Self::new(
            value < 0,
            Natural::from_u128(u128::from(value.unsigned_abs()) * u128::from(LIMB)),
        )
    }

    fn cmp(&self, other: &Self) -> Ordering {
        match (self.negative, other.negative) {
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
            (false, false) => self.nanos.cmp(&other.nanos),
            (true, true) => other.nanos.cmp(&self.nanos),
        }
    }

    fn add(&self, other: &Self) -> Self {
        if self.negative == other.negative {
            return Self::new(self.negative, self.nanos.add(&other.nanos));
        }
        match self.nanos.cmp(&other.nanos) {
            Ordering::Less => Self::new(other.negative, other.nanos.sub(&self.nanos)),
            _ => Self::new(self.negative, self.nanos.sub(&other.nanos)),
        }
    }

    fn negated(&self) -> Self {
        Self::new(!self.negative, self.nanos.clone())
    }

    fn sign(&self) -> i64 {
        match (self.nanos.is_zero(), self.negative) {
            (true, _) => 0,
            (false, true) => -1,
            (false, false) => 1,
        }
    }

    /// The value as an `int`, when it is whole and fits.
    fn as_int(&self) -> Option<i64> {
        if self.nanos.0.first().copied().unwrap_or(0) != 0 {
            return None;
        }
        let whole = self.nanos.to_u128()? / u128::from(LIMB);
        if self.negative {
            0i64.checked_sub_unsigned(u64::try_from(whole).ok()?)
        } else {
            i64::try_from(whole).ok()
        }
    }

    fn as_float(&self) -> f64 {
        let digits = self.nanos.to_decimal();
        let magnitude: f64 = format!("{digits}e-9").parse().unwrap_or(f64::INFINITY);
        if self.negative {
            -magnitude
        } else {
            magnitude
        }
    }
}

/// Parses a quantity as `resource.ParseQuantity` does: `[+-]digits[.digits]` then a suffix (none,
/// `n u m k M G T P E`, `Ki Mi Gi Ti Pi Ei`, or `e`/`E` and a signed exponent); the value is
/// rounded up to the next nano-unit, and binary-suffixed values are capped at 2⁶³-1.
fn parse(raw: &str) -> Result<Quantity, String> {
    let format_error = || {
        "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'".to_string()
    };
    let (negative, rest) = match raw.as_bytes().first() {
        Some(b'-') => (true, &raw[1..]),
        Some(b'+') => (false, &raw[1..]),
        _ => (false, raw),
    };
    let integer_end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let integer = &rest[..integer_end];
    let mut rest = &rest[integer_end..];
    let mut fraction = "";
    if let Some(after_dot) = rest.strip_prefix('.') {
        let end = after_dot
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(after_dot.len());
        fraction = &after_dot[..end];
        rest = &after_dot[end..];
    }
    if integer.is_empty() && fraction.is_empty() {
        return Err(format_error());
    }
    // (power of ten, power of two) the suffix multiplies by.
    let (exponent10, exponent2): (i64, u32) = match rest {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        exponent if exponent.starts_with(['e', 'E']) => {
            let digits = &exponent[1..];
            let unsigned = digits.strip_prefix(['+', '-']).unwrap_or(digits);
            if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
                return Err("unable to parse quantity's suffix".into());
            }
            let value = digits
                .parse::<i32>()
                .map_err(|_| "unable to parse quantity's suffix".to_string())?;
            (i64::from(value), 0)
        }
        _ => return Err("unable to parse quantity's suffix".into()),
    };
    // The digits as one integer, scaled to nano-units.
    let mut nanos = Natural::default();
    for digit in integer.bytes().chain(fraction.bytes()) {
        nanos.mul_add_small(10, u32::from(digit - b'0'));
    }
    for _ in 0..exponent2 / 10 {
        nanos.mul_add_small(1024, 0);
    }
    let fraction_digits = i64::try_from(fraction.len()).unwrap_or(i64::MAX);
    let shift = exponent10.saturating_add(9).saturating_sub(fraction_digits);
    if shift >= 0 {
        let shift = usize::try_from(shift).unwrap_or(usize::MAX);
        if !nanos.is_zero() && nanos.digits().saturating_add(shift) > MAX_DIGITS + 9 {
            return Err("quantity too large for this stand-in".into());
        }
        for _ in 0..shift {
            nanos.mul_add_small(10, 0);
        }
    } else if !nanos.is_zero() {
        // Round the magnitude up to a whole nano-unit.
        let mut inexact = false;
        let mut remaining = shift.unsigned_abs();
        while remaining > 0 && !nanos.is_zero() {
            inexact |= nanos.div_small(10);
            remaining -= 1;
        }
        if inexact || nanos.is_zero() {
            nanos = nanos.add(&Natural::from_u128(1));
        }
    }
    if exponent2 > 0 {
        let cap = Natural::from_u128(i64::MAX as u128 * u128::from(LIMB));
        if nanos.cmp(&cap) == Ordering::Greater {
            nanos = cap;
        }
    }
    Ok(Quantity::new(negative, nanos))
}

/// Registers the quantity library's functions on `env`.
pub(super) fn register(env: &mut Env) -> Result<(), DeclarationError> {
    let quantity = || QUANTITY_TYPE.to_owned();
    env.add_type(quantity())?;
    env.add_overload(
        "quantity",
        "string_to_quantity",
        vec![STRING_TYPE],
        string_to_quantity,
    )?;
    env.add_overload(
        "isQuantity",
        "is_quantity_string",
        vec![STRING_TYPE],
        is_quantity,
    )?;
    env.add_overload("sign", "quantity_sign", vec![quantity()], sign)?;
    env.add_member_overload("sign", "quantity_member_sign", quantity(), vec![], sign)?;
    env.add_member_overload(
        "isInteger",
        "quantity_is_integer",
        quantity(),
        vec![],
        is_integer,
    )?;
    env.add_member_overload(
        "asInteger",
        "quantity_get_int",
        quantity(),
        vec![],
        as_integer,
    )?;
    env.add_member_overload(
        "asApproximateFloat",
        "quantity_get_float",
        quantity(),
        vec![],
        as_approximate_float,
    )?;
    env.add_member_overload(
        "compareTo",
        "quantity_compare_to",
        quantity(),
        vec![quantity()],
        compare_to,
    )?;
    env.add_member_overload(
        "isGreaterThan",
        "quantity_is_greater_than",
        quantity(),
        vec![quantity()],
        is_greater_than,
    )?;
    env.add_member_overload(
        "isLessThan",
        "quantity_is_less_than",
        quantity(),
        vec![quantity()],
        is_less_than,
    )?;
    env.add_member_overload("add", "quantity_add", quantity(), vec![quantity()], add)?;
    env.add_member_overload("add", "quantity_add_int", quantity(), vec![INT_TYPE], add)?;
    env.add_member_overload("sub", "quantity_sub", quantity(), vec![quantity()], sub)?;
    env.add_member_overload("sub", "quantity_sub_int", quantity(), vec![INT_TYPE], sub)?;
    Ok(())
}

fn string_to_quantity<'b, 'v>(args: Args<'b, 'v>) -> Outcome<'b, 'v> {
    let raw = string_argument(&args, 0)?;
    let quantity = parse(raw).map_err(|error| ExecutionError::function_error("quantity", error))?;
    Ok(CowVal::owned(quantity))
}

fn is_quantity<'b, 'v>(args: Args<'b, 'v>) -> Outcome<'b, 'v> {
    Ok(CowVal::owned(CelBool::from(
        parse(string_argument(&args, 0)?).is_ok(),
    )))
}

fn sign<'b, 'v>(args: Args<'b, 'v>) -> Outcome<'b, 'v> {
    Ok(CowVal::owned(CelInt::from(
        argument::<Quantity>(&args, 0)?.sign(),
    )))
}

fn is_integer<'b, 'v>(args: Args<'b, 'v>) -> Outcome<'b, 'v> {
    Ok(CowVal::owned(CelBool::from(
        argument::<Quantity>(&args, 0)?.as_int().is_some(),
    )))
}

fn as_integer<'b, 'v>(args: Args<'b, 'v>) -> Outcome<'b, 'v> {
    let value = argument::<Quantity>(&args, 0)?.as_int().ok_or_else(|| {
        ExecutionError::function_error("asInteger", "cannot convert value to integer")
    })?;
    Ok(CowVal::owned(CelInt::from(value)))
}

fn as_approximate_float<'b, 'v>(args: Args<'b, 'v>) -> Outcome<'b, 'v> {
    Ok(CowVal::owned(CelDouble::from(
        argument::<Quantity>(&args, 0)?.as_float(),
    )))
}

fn ordering(args: &Args<'_, '_>) -> Result<Ordering, ExecutionError> {
    Ok(argument::<Quantity>(args, 0)?.cmp(argument::<Quantity>(args, 1)?))
}

fn compare_to<'b, 'v>(args: Args<'b, 'v>) -> Outcome<'b, 'v> {
    let value = match ordering(&args)? {
        Ordering::Less => -1,
        Ordering::Equal => 0,
        Ordering::Greater => 1,
    };
    Ok(CowVal::owned(CelInt::from(value)))
}

fn is_greater_than<'b, 'v>(args: Args<'b, 'v>) -> Outcome<'b, 'v> {
    Ok(CowVal::owned(CelBool::from(
        ordering(&args)? == Ordering::Greater,
    )))
}

fn is_less_than<'b, 'v>(args: Args<'b, 'v>) -> Outcome<'b, 'v> {
    Ok(CowVal::owned(CelBool::from(
        ordering(&args)? == Ordering::Less,
    )))
}

/// The second operand of `add`/`sub`: a quantity or an int.
fn operand(args: &Args<'_, '_>) -> Result<Quantity, ExecutionError> {
    if let Ok(quantity) = argument::<Quantity>(args, 1) {
        return Ok(quantity.clone());
    }
    Ok(Quantity::from_int(*argument::<CelInt>(args, 1)?.inner()))
}

fn add<'b, 'v>(args: Args<'b, 'v>) -> Outcome<'b, 'v> {
    let sum = argument::<Quantity>(&args, 0)?.add(&operand(&args)?);
    Ok(CowVal::owned(sum))
}

fn sub<'b, 'v>(args: Args<'b, 'v>) -> Outcome<'b, 'v> {
    let difference = argument::<Quantity>(&args, 0)?.add(&operand(&args)?.negated());
    Ok(CowVal::owned(difference))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An input and its parse: (negative, nano-units) or a fragment of the error.
    type Case = (&'static str, Result<(bool, &'static str), &'static str>);

    fn nanos(raw: &str) -> Result<(bool, String), String> {
        parse(raw).map(|q| (q.negative, q.nanos.to_decimal()))
    }

    #[test]
    fn parsing_rounds_up_to_nanos_and_caps_binary() {
        let cases: &[Case] = &[
            ("1", Ok((false, "1000000000"))),
            ("1.5G", Ok((false, "1500000000000000000"))),
            ("200k", Ok((false, "200000000000000"))),
            ("1Ki", Ok((false, "1024000000000"))),
            ("1.5Gi", Ok((false, "1610612736000000000"))),
            ("0.1Ki", Ok((false, "102400000000"))),
            ("-5m", Ok((true, "5000000"))),
            ("+5m", Ok((false, "5000000"))),
            ("1n", Ok((false, "1"))),
            ("0.1n", Ok((false, "1"))),
            ("1.0000000001", Ok((false, "1000000001"))),
            ("-0.0000000001", Ok((true, "1"))),
            ("0", Ok((false, "0"))),
            ("-0", Ok((false, "0"))),
            (".5", Ok((false, "500000000"))),
            ("5.", Ok((false, "5000000000"))),
            ("1e3", Ok((false, "1000000000000"))),
            ("1E3", Ok((false, "1000000000000"))),
            ("1e-3", Ok((false, "1000000"))),
            ("1E", Ok((false, "1000000000000000000000000000"))),
            ("16Ei", Ok((false, "9223372036854775807000000000"))),
            ("200K", Err("suffix")),
            ("Three", Err("regular expression")),
            ("Mi", Err("regular expression")),
            ("1,3G", Err("suffix")),
            ("", Err("regular expression")),
            ("-", Err("regular expression")),
            ("1e", Err("suffix")),
            ("1 k", Err("suffix")),
            ("1e99999", Err("too large")),
        ];
        for (raw, want) in cases {
            let got = nanos(raw);
            match (want, &got) {
                (Ok((negative, digits)), Ok((n, d))) => {
                    assert_eq!((*negative, *digits), (*n, d.as_str()), "{raw}");
                }
                (Err(fragment), Err(error)) => {
                    assert!(error.contains(fragment), "{raw}: {error}");
                }
                _ => panic!("{raw}: want {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn natural_arithmetic() {
        let a = Natural::from_u128(999_999_999_999_999_999);
        let b = Natural::from_u128(1);
        assert_eq!(a.add(&b).to_decimal(), "1000000000000000000");
        assert_eq!(a.add(&b).sub(&b), a);
        assert_eq!(a.cmp(&b), Ordering::Greater);
        assert_eq!(Natural::default().to_decimal(), "0");
        assert_eq!(a.to_u128(), Some(999_999_999_999_999_999));
    }
}
