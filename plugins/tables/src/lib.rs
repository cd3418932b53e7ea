//! Decision tables: rules a tenant writes as a table, not as code, in the manner of DMN.
//!
//! A table has input columns (each reads one value from the request), output columns, and rules
//! (rows): a rule matches when every input cell's test passes: `-` (anything), `it, software`
//! (any of these), `< 500`, `[500..5000)` (a range), `not(...)`, `>= other_input`. The hit
//! policy says which matches count: `first` (the first match, top to bottom), `unique` (exactly
//! one may match), or `collect` (every match, in order).
//!
//! The same table serves as a router (output `next`: the step to go to) and as an approval
//! policy (outputs `approver`, and optionally `stage` and `required`; `auto` approves without
//! anybody). A rule may `reject` the request instead (the step fails with invalid input, naming
//! why); `note` is the rule's annotation, shown in the decision's reason.
//!
//! ```
//! use flowgate_tables::{Table, TableSpec};
//!
//! let spec: TableSpec = serde_json::from_value(serde_json::json!({
//!     "hit": "first",
//!     "inputs": [{"name": "tier", "from": "/customer/tier", "lowercase": true}],
//!     "outputs": ["next", "note"],
//!     "rules": [
//!         ["platinum, enterprise", "priority", "top-tier customer"],
//!         ["-", "general", ""],
//!     ],
//! })).unwrap();
//! let table = Table::compile(&spec).unwrap();
//! # let _ = table;
//! ```
//!
//! The host checks a tenant's tables when it loads the tenant ([`Table::compile`]; errors name the
//! rule and the column) and hands the plugin the table as JSON; the plugin compiles it again and
//! evaluates it against a request's [`Facts`].

mod cell;
mod value;

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use cell::Cell;
pub use rust_decimal::Decimal;
pub use value::{Kind, Value};

/// A decision table as written in a tenant's file, and as the plugin receives it (JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableSpec {
    /// Which matching rules count.
    pub hit: HitPolicy,
    /// For approval policies: whether several stages (from `collect`) run in parallel or one
    /// after another.
    #[serde(default)]
    pub order: StageOrder,
    /// The input columns, left to right.
    pub inputs: Vec<InputSpec>,
    /// The output columns after them: `next`, `approver`, `stage`, `required`, `reject`, `note`.
    pub outputs: Vec<String>,
    /// The rules, top to bottom: one cell per input, then one per output.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Vec<String>>,
    /// Instead of `rules`: a CSV file (beside the tenant's file) whose header row names the
    /// columns and whose other rows are the rules. The host reads it before the plugin sees the
    /// table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules_file: Option<String>,
    /// Where the rules came from, for errors: a CSV file's name, whose line `n + 1` is rule `n`.
    #[serde(skip)]
    pub rules_origin: Option<String>,
}

/// Which matching rules count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HitPolicy {
    /// The first matching rule, top to bottom.
    First,
    /// Exactly one rule may match; two matching is the table's error.
    Unique,
    /// Every matching rule, top to bottom: several next steps (parallel branches), or several
    /// approval stages.
    Collect,
}

impl fmt::Display for HitPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HitPolicy::First => "first",
            HitPolicy::Unique => "unique",
            HitPolicy::Collect => "collect",
        })
    }
}

/// Whether the stages of an approval run together or one after another.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StageOrder {
    #[default]
    Parallel,
    Sequential,
}

/// An input column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// The column's name, which the rules' header (CSV) and comparisons (`>= name`) use.
    pub name: String,
    /// Where the value comes from: a JSON pointer into the instance data (`/customer/tier`), or
    /// one of the request's fields: `amount` (in major units: `12.50`), `currency`, `category`,
    /// `requester` (approval requests), `candidates` (routing requests), `step`, `definition`.
    /// With `words`, a list of them whose texts are searched together.
    pub from: Sources,
    /// Compare text trimmed and lowercased.
    #[serde(default, skip_serializing_if = "is_false")]
    pub lowercase: bool,
    /// A request without this value (missing, `null` or empty text) is invalid input.
    #[serde(default, skip_serializing_if = "is_false")]
    pub required: bool,
    /// The value is how many of these words occur in the text (any case, whole words).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub words: Option<Vec<String>>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// One source, or several (for `words`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Sources {
    One(String),
    Many(Vec<String>),
}

impl Sources {
    fn list(&self) -> Vec<&str> {
        match self {
            Sources::One(s) => vec![s.as_str()],
            Sources::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

/// Where an input reads its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The approval request's amount in major units of its currency.
    Amount,
    Currency,
    Category,
    Requester,
    /// The step ids a router may choose from.
    Candidates,
    /// The step being decided.
    Step,
    /// The workflow definition's id.
    Definition,
    /// A JSON pointer into the instance data.
    Data(String),
}

impl Source {
    fn parse(text: &str) -> Result<Source, String> {
        Ok(match text {
            "amount" => Source::Amount,
            "currency" => Source::Currency,
            "category" => Source::Category,
            "requester" => Source::Requester,
            "candidates" => Source::Candidates,
            "step" => Source::Step,
            "definition" => Source::Definition,
            pointer if pointer.starts_with('/') => Source::Data(pointer.to_string()),
            other => {
                return Err(format!(
                    "`from = {other:?}` is neither a JSON pointer into the instance data (`/customer/tier`) nor one of amount, currency, category, requester, candidates, step, definition"
                ));
            }
        })
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Amount => f.write_str("amount"),
            Source::Currency => f.write_str("currency"),
            Source::Category => f.write_str("category"),
            Source::Requester => f.write_str("requester"),
            Source::Candidates => f.write_str("candidates"),
            Source::Step => f.write_str("step"),
            Source::Definition => f.write_str("definition"),
            Source::Data(pointer) => f.write_str(pointer),
        }
    }
}

/// The request a table decides on, as the plugin sees it.
pub trait Facts {
    /// The value at `source`. `Err(Fact::Invalid)` when the request is malformed there,
    /// `Err(Fact::Unavailable)` when this kind of request has no such field.
    fn value(&self, source: &Source) -> Result<Value, Fact>;
}

/// Why a fact could not be read.
#[derive(Debug, Clone, PartialEq)]
pub enum Fact {
    /// The request is malformed at this source: the message says how.
    Invalid(String),
    /// This kind of request does not carry it (e.g. `amount` when routing).
    Unavailable,
}

/// A table that does not hold together: where, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct TableError {
    /// `input `amount``, `rule 3, column `amount``, `outputs`, ...
    pub at: String,
    pub message: String,
}

impl fmt::Display for TableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.message)
    }
}

impl std::error::Error for TableError {}

/// Why an evaluation gave no decision.
#[derive(Debug, Clone, PartialEq)]
pub enum EvalError {
    /// The request lacks what the table needs, or a rule rejected it: retrying will not help,
    /// and the message names the field.
    InvalidInput(String),
    /// The table cannot decide this request (no rule matched, two matched under `unique`, a
    /// router table asked for approval): the tenant's table needs a change.
    Table(String),
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EvalError::InvalidInput(m) | EvalError::Table(m) => f.write_str(m),
        }
    }
}

/// A routing decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub next: Vec<String>,
    pub reason: String,
}

/// An approval decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Approval {
    pub requirement: Requirement,
    pub reason: String,
}

/// What an approval needs.
#[derive(Debug, Clone, PartialEq)]
pub enum Requirement {
    Auto,
    Stages(StageOrder, Vec<Stage>),
}

/// One stage of an approval: `required` of `approvers`.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub name: String,
    pub approvers: Vec<Approver>,
    pub required: u32,
}

/// Who may approve.
#[derive(Debug, Clone, PartialEq)]
pub enum Approver {
    Role(String),
    Person(String),
}

const OUTPUTS: &[&str] = &["next", "approver", "stage", "required", "reject", "note"];

/// A checked table, ready to evaluate.
#[derive(Debug, Clone)]
pub struct Table {
    hit: HitPolicy,
    order: StageOrder,
    inputs: Vec<Input>,
    rules: Vec<Rule>,
    routes: bool,
    approves: bool,
}

#[derive(Debug, Clone)]
struct Input {
    name: String,
    sources: Vec<Source>,
    lowercase: bool,
    required: bool,
    /// Lowercased.
    words: Option<Vec<String>>,
    kind: Option<Kind>,
}

#[derive(Debug, Clone)]
struct Rule {
    number: usize,
    cells: Vec<Cell>,
    next: Option<String>,
    /// `Some(None)`: `auto`.
    stage: Option<Option<Stage>>,
    reject: Option<String>,
    note: Option<String>,
}

impl TableSpec {
    /// Takes the rules from CSV text (`origin` names the file in errors): the header row names
    /// the columns, which must be the inputs then the outputs, in order.
    #[cfg(feature = "csv")]
    pub fn read_csv_rules(&mut self, text: &str, origin: &str) -> Result<(), TableError> {
        let at = |line: u64| TableError {
            at: format!("{origin} line {line}"),
            message: String::new(),
        };
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .trim(csv::Trim::All)
            .from_reader(text.as_bytes());
        let expected: Vec<&str> = self
            .inputs
            .iter()
            .map(|i| i.name.as_str())
            .chain(self.outputs.iter().map(String::as_str))
            .collect();
        let header = reader.headers().map_err(|e| TableError {
            message: e.to_string(),
            ..at(1)
        })?;
        let found: Vec<&str> = header.iter().collect();
        if found != expected {
            return Err(TableError {
                message: format!(
                    "the header names the columns {}, but the table's inputs and outputs are {}",
                    found.join(", "),
                    expected.join(", ")
                ),
                ..at(1)
            });
        }
        let mut rules = Vec::new();
        for record in reader.records() {
            let record = record.map_err(|e| TableError {
                message: e.to_string(),
                ..at(e.position().map_or(0, |p| p.line()))
            })?;
            rules.push(record.iter().map(str::to_string).collect());
        }
        self.rules = rules;
        self.rules_file = None;
        self.rules_origin = Some(origin.to_string());
        Ok(())
    }
}

impl Table {
    /// Checks a table: every input's source, every cell's test, every column's type (text,
    /// number or true/false, consistently), every output. The error names the rule and column.
    pub fn compile(spec: &TableSpec) -> Result<Table, TableError> {
        // `rule 3`, or `rule 3 (rules.csv line 4)` for rules from a file.
        let rule = |number: usize| match &spec.rules_origin {
            Some(origin) => format!("rule {number} ({origin} line {})", number + 1),
            None => format!("rule {number}"),
        };
        let rule_at = |number: usize, column: &str| TableError {
            at: format!("{}, column `{column}`", rule(number)),
            message: String::new(),
        };
        if spec.inputs.is_empty() {
            return Err(TableError {
                at: "inputs".to_string(),
                message: "a table needs at least one input".to_string(),
            });
        }
        if let Some(file) = &spec.rules_file {
            return Err(TableError {
                at: "rules_file".to_string(),
                message: format!("{file} was not read (the host reads rules files)"),
            });
        }
        let mut names = BTreeSet::new();
        let mut inputs = Vec::new();
        for input in &spec.inputs {
            let at = |message: String| TableError {
                at: format!("input `{}`", input.name),
                message,
            };
            if !valid_name(&input.name) {
                return Err(at(
                    "a name is letters, digits, `_` and `-`, starting with a letter".to_string(),
                ));
            }
            if !names.insert(input.name.as_str()) {
                return Err(at("the name is used twice".to_string()));
            }
            let sources = input
                .from
                .list()
                .into_iter()
                .map(Source::parse)
                .collect::<Result<Vec<_>, _>>()
                .map_err(at)?;
            if sources.is_empty() {
                return Err(at("`from` names no source".to_string()));
            }
            if sources.len() > 1 && input.words.is_none() {
                return Err(at(
                    "several sources are read together only with `words`".to_string()
                ));
            }
            let words = match &input.words {
                Some(_) if input.lowercase => {
                    return Err(at(
                        "`words` match whatever the case; remove `lowercase`".to_string()
                    ));
                }
                Some(words) if words.is_empty() => {
                    return Err(at("`words` is empty".to_string()));
                }
                Some(words) => Some(words.iter().map(|w| w.trim().to_lowercase()).collect()),
                None => None,
            };
            inputs.push(Input {
                name: input.name.clone(),
                kind: words.as_ref().map(|_| Kind::Number).or(match sources[0] {
                    Source::Amount => Some(Kind::Number),
                    Source::Currency
                    | Source::Category
                    | Source::Requester
                    | Source::Candidates
                    | Source::Step
                    | Source::Definition => Some(Kind::Text),
                    Source::Data(_) => None,
                }),
                sources,
                lowercase: input.lowercase,
                required: input.required,
                words,
            });
        }
        for output in &spec.outputs {
            let at = TableError {
                at: format!("output `{output}`"),
                message: String::new(),
            };
            if !OUTPUTS.contains(&output.as_str()) {
                return Err(TableError {
                    message: "unknown; outputs are `next` (routers), `approver`, `stage`, `required` (approval policies), `reject` and `note`".to_string(),
                    ..at
                });
            }
            if !names.insert(output.as_str()) {
                return Err(TableError {
                    message: "the name is used twice".to_string(),
                    ..at
                });
            }
        }
        let column = |name: &str| spec.outputs.iter().position(|o| o == name);
        let routes = column("next").is_some();
        let approves = column("approver").is_some();
        if !routes && !approves {
            return Err(TableError {
                at: "outputs".to_string(),
                message: "a table needs `next` (to route) or `approver` (to decide approvals)"
                    .to_string(),
            });
        }
        for needs_approver in ["stage", "required"] {
            if column(needs_approver).is_some() && !approves {
                return Err(TableError {
                    at: format!("output `{needs_approver}`"),
                    message: "it needs an `approver` column".to_string(),
                });
            }
        }
        if spec.rules.is_empty() {
            return Err(TableError {
                at: "rules".to_string(),
                message: "a table needs at least one rule".to_string(),
            });
        }

        let input_names: Vec<&str> = spec.inputs.iter().map(|i| i.name.as_str()).collect();
        let width = inputs.len() + spec.outputs.len();
        let mut rules = Vec::new();
        for (index, row) in spec.rules.iter().enumerate() {
            let number = index + 1;
            if row.len() != width {
                return Err(TableError {
                    at: rule(number),
                    message: format!(
                        "{} cells, but the table has {} inputs and {} outputs ({width} columns)",
                        row.len(),
                        inputs.len(),
                        spec.outputs.len()
                    ),
                });
            }
            let mut cells = Vec::new();
            for (input, text) in inputs.iter_mut().zip(row) {
                let cell = Cell::parse(text, &input_names).map_err(|message| TableError {
                    message,
                    ..rule_at(number, &input.name)
                })?;
                for (kind, what) in cell.kinds() {
                    match input.kind {
                        None => input.kind = Some(kind),
                        Some(k) if k == kind => {}
                        Some(k) => {
                            return Err(TableError {
                                message: format!(
                                    "{what} is {kind}, but this column compares {k} (from its source or the cells above)"
                                ),
                                ..rule_at(number, &input.name)
                            });
                        }
                    }
                }
                if input.lowercase
                    && let Some(capital) = cell.capitalized()
                {
                    return Err(TableError {
                        message: format!(
                            "`{capital}` has capitals, but the input is lowercased, so it never matches; write it in lowercase"
                        ),
                        ..rule_at(number, &input.name)
                    });
                }
                cells.push(cell);
            }
            let out = |name: &str| {
                column(name)
                    .map(|i| row[inputs.len() + i].trim())
                    .filter(|s| !s.is_empty())
            };
            let reject = out("reject").map(str::to_string);
            let next = match out("next") {
                Some(step) if step.contains(char::is_whitespace) => {
                    return Err(TableError {
                        message: format!("`{step}` is not a step id (no spaces)"),
                        ..rule_at(number, "next")
                    });
                }
                other => other.map(str::to_string),
            };
            let stage = match out("approver") {
                Some(text) => Some(stage(text, out("stage"), out("required")).map_err(
                    |(column, message)| TableError {
                        message,
                        ..rule_at(number, column)
                    },
                )?),
                None => {
                    for column in ["stage", "required"] {
                        if out(column).is_some() {
                            return Err(TableError {
                                message: "set without an `approver`".to_string(),
                                ..rule_at(number, column)
                            });
                        }
                    }
                    None
                }
            };
            if reject.is_none() && next.is_none() && stage.is_none() {
                let wanted = [("next", routes), ("approver", approves), ("reject", true)]
                    .iter()
                    .filter(|(name, has)| *has && column(name).is_some())
                    .map(|(name, _)| format!("`{name}`"))
                    .collect::<Vec<_>>()
                    .join(" or ");
                return Err(TableError {
                    at: rule(number),
                    message: format!("the rule decides nothing: set {wanted}"),
                });
            }
            rules.push(Rule {
                number,
                cells,
                next,
                stage,
                reject,
                note: out("note").map(str::to_string),
            });
        }
        // A comparison with another input needs both to hold numbers (or both the same kind).
        for rule in &rules {
            for (i, cell) in rule.cells.iter().enumerate() {
                for other in cell.references() {
                    let (mine, theirs) = (inputs[i].kind, inputs[other].kind);
                    if mine.is_some() && theirs.is_some() && mine != theirs {
                        return Err(TableError {
                            message: format!(
                                "compares with `{}`, which holds {}, but this column holds {}",
                                inputs[other].name,
                                theirs.map_or(String::new(), |k| k.to_string()),
                                mine.map_or(String::new(), |k| k.to_string()),
                            ),
                            ..rule_at(rule.number, &inputs[i].name)
                        });
                    }
                }
            }
        }
        Ok(Table {
            hit: spec.hit,
            order: spec.order,
            inputs,
            rules,
            routes,
            approves,
        })
    }

    /// Chooses the next steps among `candidates`.
    pub fn route(&self, facts: &dyn Facts, candidates: &[String]) -> Result<Route, EvalError> {
        if !self.routes {
            return Err(EvalError::Table(
                "the table has no `next` column, so it cannot route (it is an approval table)"
                    .to_string(),
            ));
        }
        let (values, matched) = self.evaluate(facts)?;
        let mut next: Vec<String> = Vec::new();
        for rule in &matched {
            let Some(step) = &rule.next else {
                return Err(EvalError::Table(format!(
                    "rule {} matched but gives no `next` step",
                    rule.number
                )));
            };
            if !candidates.contains(step) {
                return Err(EvalError::Table(format!(
                    "rule {} chose `{step}`, which this step does not offer (candidates: {})",
                    rule.number,
                    candidates.join(", ")
                )));
            }
            if !next.contains(step) {
                next.push(step.clone());
            }
        }
        Ok(Route {
            next,
            reason: self.reason(&values, &matched),
        })
    }

    /// Decides who must approve.
    pub fn approve(&self, facts: &dyn Facts) -> Result<Approval, EvalError> {
        if !self.approves {
            return Err(EvalError::Table(
                "the table has no `approver` column, so it cannot decide approvals (it is a routing table)"
                    .to_string(),
            ));
        }
        let (values, matched) = self.evaluate(facts)?;
        let mut stages = Vec::new();
        for rule in &matched {
            match &rule.stage {
                None => {
                    return Err(EvalError::Table(format!(
                        "rule {} matched but gives no `approver`",
                        rule.number
                    )));
                }
                Some(None) => {}
                Some(Some(stage)) => stages.push(stage.clone()),
            }
        }
        let requirement = if stages.is_empty() {
            Requirement::Auto
        } else {
            Requirement::Stages(self.order, stages)
        };
        Ok(Approval {
            requirement,
            reason: self.reason(&values, &matched),
        })
    }

    /// The inputs' values and the rules that count, by the hit policy; a rule that rejects
    /// makes the request invalid.
    fn evaluate(&self, facts: &dyn Facts) -> Result<(Vec<Value>, Vec<&Rule>), EvalError> {
        let values = self
            .inputs
            .iter()
            .map(|input| input.read(facts))
            .collect::<Result<Vec<_>, _>>()?;
        let mut matched = Vec::new();
        for rule in &self.rules {
            let hit = rule
                .cells
                .iter()
                .zip(&values)
                .all(|(cell, value)| cell.matches(value, &values));
            if hit {
                matched.push(rule);
                if self.hit == HitPolicy::First {
                    break;
                }
            }
        }
        if matched.is_empty() {
            return Err(EvalError::Table(format!(
                "no rule matched {}; add a rule for it (a last rule of `-` cells catches the rest)",
                self.shown(&values)
            )));
        }
        if self.hit == HitPolicy::Unique && matched.len() > 1 {
            let numbers: Vec<String> = matched.iter().map(|r| r.number.to_string()).collect();
            return Err(EvalError::Table(format!(
                "rules {} all match {}, but the hit policy is `unique`",
                numbers.join(", "),
                self.shown(&values)
            )));
        }
        if let Some(rule) = matched.iter().find(|r| r.reject.is_some()) {
            let why = rule.reject.as_deref().unwrap_or_default();
            return Err(EvalError::InvalidInput(format!(
                "{why} (rule {} of the decision table, for {})",
                rule.number,
                self.shown(&values)
            )));
        }
        Ok((values, matched))
    }

    fn shown(&self, values: &[Value]) -> String {
        self.inputs
            .iter()
            .zip(values)
            .map(|(input, value)| format!("{} = {value}", input.name))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn reason(&self, values: &[Value], matched: &[&Rule]) -> String {
        let rules: Vec<String> = matched
            .iter()
            .map(|rule| match &rule.note {
                Some(note) => format!("rule {} ({note})", rule.number),
                None => format!("rule {}", rule.number),
            })
            .collect();
        format!("{}: {}", self.shown(values), rules.join("; "))
    }
}

impl Input {
    fn read(&self, facts: &dyn Facts) -> Result<Value, EvalError> {
        let fetch = |source: &Source| {
            facts.value(source).map_err(|fact| match fact {
                Fact::Invalid(message) => EvalError::InvalidInput(format!("{source}: {message}")),
                Fact::Unavailable => EvalError::Table(format!(
                    "input `{}` reads `{source}`, which this kind of request does not have",
                    self.name
                )),
            })
        };
        let value = match &self.words {
            Some(words) => {
                let mut text = String::new();
                for source in &self.sources {
                    match fetch(source)? {
                        Value::Missing => {}
                        Value::Text(t) => {
                            text.push(' ');
                            text.push_str(&t);
                        }
                        other => {
                            return Err(EvalError::InvalidInput(format!(
                                "{source}: expected text to search for words, got `{other}`"
                            )));
                        }
                    }
                }
                if self.required && text.trim().is_empty() {
                    return Err(self.missing());
                }
                let found: BTreeSet<String> = text
                    .split(|c: char| !c.is_alphanumeric())
                    .filter(|w| !w.is_empty())
                    .map(str::to_lowercase)
                    .collect();
                let count = words.iter().filter(|w| found.contains(*w)).count();
                Value::Number(Decimal::from(count))
            }
            None => {
                let value = fetch(&self.sources[0])?;
                if self.lowercase {
                    value.lowercased()
                } else {
                    value
                }
            }
        };
        if self.required
            && (value == Value::Missing || matches!(&value, Value::Text(t) if t.trim().is_empty()))
        {
            return Err(self.missing());
        }
        if let Some(kind) = self.kind {
            let wrong = match &value {
                Value::List(items) => items
                    .iter()
                    .find(|v| v.kind().is_some_and(|k| k != kind) || matches!(v, Value::List(_))),
                other if other.kind().is_some_and(|k| k != kind) => Some(other),
                _ => None,
            };
            if let Some(wrong) = wrong {
                return Err(EvalError::InvalidInput(format!(
                    "{}: the decision table compares {kind} here, got `{wrong}`",
                    self.sources[0]
                )));
            }
        }
        Ok(value)
    }

    fn missing(&self) -> EvalError {
        let sources: Vec<String> = self.sources.iter().map(Source::to_string).collect();
        EvalError::InvalidInput(format!(
            "{}: the decision table needs `{}`, and the request has none",
            sources.join(", "),
            self.name
        ))
    }
}

/// An approval rule's stage, or `None` for `auto`; errors name the column.
fn stage(
    approver: &str,
    name: Option<&str>,
    required: Option<&str>,
) -> Result<Option<Stage>, (&'static str, String)> {
    if approver == "auto" {
        for (column, set) in [("stage", name), ("required", required)] {
            if set.is_some() {
                return Err((column, "set, but the approver is `auto`".to_string()));
            }
        }
        return Ok(None);
    }
    let mut approvers = Vec::new();
    for item in approver.split(',').map(str::trim) {
        approvers.push(match item.split_once(':') {
            Some(("role", role)) if valid_name(role.trim()) => Approver::Role(role.trim().to_string()),
            Some(("person", person)) if !person.trim().is_empty() => {
                Approver::Person(person.trim().to_string())
            }
            _ => {
                return Err((
                    "approver",
                    format!(
                        "`{item}` is not an approver: write `role:manager`, `person:dora`, a list of them, or `auto`"
                    ),
                ));
            }
        });
    }
    let required = match required {
        None => 1,
        Some(text) => match text.parse::<u32>() {
            Ok(n) if n >= 1 && n as usize <= approvers.len() => n,
            _ => {
                return Err((
                    "required",
                    format!(
                        "`{text}` is not a number from 1 to {} (the approvers listed)",
                        approvers.len()
                    ),
                ));
            }
        },
    };
    let name = match name {
        Some(name) => name.to_string(),
        None => match &approvers[0] {
            Approver::Role(r) | Approver::Person(r) => r.clone(),
        },
    };
    Ok(Some(Stage {
        name,
        approvers,
        required,
    }))
}

fn valid_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

#[cfg(test)]
mod tests;
