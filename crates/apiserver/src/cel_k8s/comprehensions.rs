//! cel-go's two-variable comprehensions, which Kubernetes 1.32 enables: `all(i, v, p)`,
//! `exists(i, v, p)`, `existsOne(i, v, p)`, `transformList(i, v, [filter,] e)`,
//! `transformMap(k, v, [filter,] e)` and `transformMapEntry(k, v, [filter,] e)`, over a list
//! (index, element) or a map (key, value).
//!
//! The `cel` crate's comprehensions bind one variable, so each macro expands into one over
//! the target's indices or keys (`@kvKeys`, sorted for a map), binding the value with a
//! comprehension over an empty list whose accumulator is the value (as `cel.bind` does). The
//! target is bound once, under a name no rule can spell.

use std::cmp::Ordering;
use std::collections::HashMap;

use cel::common::ast::{
    operators, CallExpr, ComprehensionExpr, Expr, IdedExpr, ListExpr, LiteralValue, MapExpr,
};
use cel::common::types::{CelInt, CelList, CelMap, CelMapKey, DYN_TYPE, LIST_TYPE, MAP_TYPE};
use cel::common::value::{CowVal, Val};
use cel::parser::{Macro, MacroExprHelper, ParseError};
use cel::{DeclarationError, Env, ExecutionError};

use super::{Args, Outcome};

/// The indices of a list, or the sorted keys of a map.
const KEYS: &str = "@kvKeys";
/// `@mapInsert(map, key, value)` and `@mapInsert(map, entries)`: a copy of the map with more
/// entries; a key already present is an error.
const INSERT: &str = "@mapInsert";
/// The accumulator, as the standard macros name it.
const RESULT: &str = "@result";

#[derive(Clone, Copy, Debug)]
enum Shape {
    All,
    Exists,
    ExistsOne,
    TransformList,
    TransformMap,
    TransformMapEntry,
}

/// Registers the macros and the hidden functions their expansions call.
pub(super) fn register(env: &mut Env) -> Result<(), DeclarationError> {
    env.add_overload(KEYS, "kv_keys_list", vec![LIST_TYPE], keys)?;
    env.add_overload(KEYS, "kv_keys_map", vec![MAP_TYPE], keys)?;
    env.add_overload(
        INSERT,
        "map_insert_key_value",
        vec![MAP_TYPE, DYN_TYPE, DYN_TYPE],
        insert,
    )?;
    env.add_overload(INSERT, "map_insert_map", vec![MAP_TYPE, MAP_TYPE], insert)?;
    let macros = [
        ("all", 3, Shape::All),
        ("exists", 3, Shape::Exists),
        ("existsOne", 3, Shape::ExistsOne),
        ("transformList", 3, Shape::TransformList),
        ("transformList", 4, Shape::TransformList),
        ("transformMap", 3, Shape::TransformMap),
        ("transformMap", 4, Shape::TransformMap),
        ("transformMapEntry", 3, Shape::TransformMapEntry),
        ("transformMapEntry", 4, Shape::TransformMapEntry),
    ];
    for (name, arg_count, shape) in macros {
        env.add_macro(Macro::receiver(
            name,
            arg_count,
            move |helper, target, args| expand(shape, helper, target, args).map(Some),
        ))?;
    }
    Ok(())
}

fn call(helper: &mut MacroExprHelper<'_>, name: &str, args: Vec<IdedExpr>) -> IdedExpr {
    helper.next_expr(Expr::Call(CallExpr {
        func_name: name.to_string(),
        target: None,
        args,
    }))
}

fn ident(helper: &mut MacroExprHelper<'_>, name: &str) -> IdedExpr {
    helper.next_expr(Expr::Ident(name.to_string()))
}

/// `body` with `name` bound to `value`: a comprehension over `[]` whose accumulator is the
/// value.
fn bind(helper: &mut MacroExprHelper<'_>, name: &str, value: IdedExpr, body: IdedExpr) -> IdedExpr {
    let empty = helper.next_expr(Expr::List(ListExpr::new(Vec::new())));
    let never = helper.next_expr(Expr::Literal(LiteralValue::Boolean(false.into())));
    let step = ident(helper, name);
    helper.next_expr(Expr::Comprehension(Box::new(ComprehensionExpr {
        iter_range: empty,
        iter_var: "#unused".to_string(),
        iter_var2: None,
        accu_var: name.to_string(),
        accu_init: value,
        loop_cond: never,
        loop_step: step,
        result: body,
    })))
}

fn expand(
    shape: Shape,
    helper: &mut MacroExprHelper<'_>,
    target: &mut Option<IdedExpr>,
    args: &mut Vec<IdedExpr>,
) -> Result<IdedExpr, ParseError> {
    let Some(target) = target.take() else {
        return Err(helper.new_error(0, "a two-variable comprehension needs a target"));
    };
    let names: Vec<String> = args
        .iter()
        .take(2)
        .filter_map(|arg| match &arg.expr {
            Expr::Ident(name) => Some(name.clone()),
            _ => None,
        })
        .collect();
    let [key_name, value_name] = names.as_slice() else {
        return Err(helper.new_error(target.id, "argument must be a simple name"));
    };
    if key_name == value_name {
        return Err(helper.new_error(target.id, format!("duplicate variable name: {key_name}")));
    }
    let (key_name, value_name) = (key_name.clone(), value_name.clone());
    let mut rest: Vec<IdedExpr> = args.drain(2..).collect();
    let body = rest.pop().unwrap_or_default();
    let filter = rest.pop();
    // The target, bound once under a name unique to this expansion.
    let bound = format!("@__kv{}", target.id);
    let value_of = |helper: &mut MacroExprHelper<'_>| {
        let container = ident(helper, &bound);
        let key = ident(helper, &key_name);
        call(helper, operators::INDEX, vec![container, key])
    };
    let accumulator = |helper: &mut MacroExprHelper<'_>| ident(helper, RESULT);
    let (init, condition, step, result) = match shape {
        Shape::All | Shape::Exists => {
            let all = matches!(shape, Shape::All);
            let init = helper.next_expr(Expr::Literal(LiteralValue::Boolean(all.into())));
            let accu = accumulator(helper);
            let tested = if all {
                accu
            } else {
                call(helper, operators::LOGICAL_NOT, vec![accu])
            };
            let condition = call(helper, operators::NOT_STRICTLY_FALSE, vec![tested]);
            let value = value_of(helper);
            let predicate = bind(helper, &value_name, value, body);
            let accu = accumulator(helper);
            let connective = if all {
                operators::LOGICAL_AND
            } else {
                operators::LOGICAL_OR
            };
            let step = call(helper, connective, vec![accu, predicate]);
            (init, condition, step, accumulator(helper))
        }
        Shape::ExistsOne => {
            let init = helper.next_expr(Expr::Literal(LiteralValue::Int(0.into())));
            let condition = helper.next_expr(Expr::Literal(LiteralValue::Boolean(true.into())));
            let accu = accumulator(helper);
            let one = helper.next_expr(Expr::Literal(LiteralValue::Int(1.into())));
            let incremented = call(helper, operators::ADD, vec![accu, one]);
            let unchanged = accumulator(helper);
            let counted = call(
                helper,
                operators::CONDITIONAL,
                vec![body, incremented, unchanged],
            );
            let value = value_of(helper);
            let step = bind(helper, &value_name, value, counted);
            let accu = accumulator(helper);
            let one = helper.next_expr(Expr::Literal(LiteralValue::Int(1.into())));
            let result = call(helper, operators::EQUALS, vec![accu, one]);
            (init, condition, step, result)
        }
        Shape::TransformList | Shape::TransformMap | Shape::TransformMapEntry => {
            let init = match shape {
                Shape::TransformList => helper.next_expr(Expr::List(ListExpr::new(Vec::new()))),
                _ => helper.next_expr(Expr::Map(MapExpr {
                    entries: Vec::new(),
                })),
            };
            let condition = helper.next_expr(Expr::Literal(LiteralValue::Boolean(true.into())));
            let accu = accumulator(helper);
            let grown = match shape {
                Shape::TransformList => {
                    let element = helper.next_expr(Expr::List(ListExpr::new(vec![body])));
                    call(helper, operators::ADD, vec![accu, element])
                }
                Shape::TransformMap => {
                    let key = ident(helper, &key_name);
                    call(helper, INSERT, vec![accu, key, body])
                }
                _ => call(helper, INSERT, vec![accu, body]),
            };
            let kept = match filter {
                Some(filter) => {
                    let unchanged = accumulator(helper);
                    call(
                        helper,
                        operators::CONDITIONAL,
                        vec![filter, grown, unchanged],
                    )
                }
                None => grown,
            };
            let value = value_of(helper);
            let step = bind(helper, &value_name, value, kept);
            (init, condition, step, accumulator(helper))
        }
    };
    let range_of = ident(helper, &bound);
    let range = call(helper, KEYS, vec![range_of]);
    let fold = helper.next_expr(Expr::Comprehension(Box::new(ComprehensionExpr {
        iter_range: range,
        iter_var: key_name,
        iter_var2: None,
        accu_var: RESULT.to_string(),
        accu_init: init,
        loop_cond: condition,
        loop_step: step,
        result,
    })));
    Ok(bind(helper, &bound, target, fold))
}

/// `@kvKeys(list)`: `[0, 1, …]`; `@kvKeys(map)`: the keys, sorted when they compare.
fn keys<'b, 'v>(args: Args<'b, 'v>) -> Outcome<'b, 'v> {
    let container = args
        .first()
        .ok_or_else(|| ExecutionError::invalid_argument_count(1, 0))?;
    let iterable = container.as_iterable().ok_or_else(|| {
        ExecutionError::no_such_overload(KEYS, vec![container.get_type().name().to_owned()])
    })?;
    let mut items: Vec<Box<dyn Val + 'v>> = Vec::new();
    let mut iterator = iterable.iter();
    while let Some(item) = iterator.next() {
        items.push(item.clone_as_boxed());
    }
    if container.get_type().kind() == cel::common::types::Kind::List {
        let indices = (0..items.len())
            .map(|i| {
                Box::new(CelInt::from(i64::try_from(i).unwrap_or(i64::MAX))) as Box<dyn Val + 'v>
            })
            .collect::<Vec<_>>();
        return Ok(CowVal::owned(CelList::from(indices)));
    }
    items.sort_by(|a, b| {
        a.as_comparer()
            .and_then(|c| c.compare(b.as_ref()).ok())
            .unwrap_or(Ordering::Equal)
    });
    Ok(CowVal::owned(CelList::from(items)))
}

/// `@mapInsert(map, key, value)` / `@mapInsert(map, entries)`.
fn insert<'b, 'v>(args: Args<'b, 'v>) -> Outcome<'b, 'v> {
    let map = args
        .first()
        .and_then(|m| m.downcast_ref::<CelMap<'v>>())
        .ok_or_else(|| ExecutionError::function_error(INSERT, "expected a map"))?;
    let mut entries: HashMap<CelMapKey<'v>, Box<dyn Val + 'v>> = map.inner().clone();
    let mut add = |key: Box<dyn Val + 'v>, value: Box<dyn Val + 'v>| {
        let key = CelMapKey::try_from(key)?;
        if entries.contains_key(&key) {
            return Err(ExecutionError::function_error(
                INSERT,
                format!("insert failed: key {key:?} already exists"),
            ));
        }
        entries.insert(key, value);
        Ok(())
    };
    match args.as_slice() {
        [_, key, value] => add(key.clone_as_boxed(), value.clone_as_boxed())?,
        [_, more] => {
            let more = more.downcast_ref::<CelMap<'v>>().ok_or_else(|| {
                ExecutionError::function_error(
                    "transformMapEntry",
                    "the expression must evaluate to a map",
                )
            })?;
            for (key, value) in more.inner() {
                let key: Box<dyn Val + 'v> = match key.clone() {
                    CelMapKey::Bool(b) => Box::new(b),
                    CelMapKey::Int(i) => Box::new(i),
                    CelMapKey::String(s) => Box::new(s),
                    CelMapKey::UInt(u) => Box::new(u),
                };
                add(key, value.clone())?;
            }
        }
        _ => return Err(ExecutionError::invalid_argument_count(3, args.len())),
    }
    Ok(CowVal::owned(CelMap::from(entries)))
}
