//! Workflow definitions: the model, parsing (TOML or JSON, same schema), and deploy-time
//! validation with precise errors.
//!
//! ```
//! use flowgate_engine::definition::{Format, parse};
//!
//! let source = r#"
//! id = "hello"
//! start = "greet"
//!
//! [[steps]]
//! id = "greet"
//! kind = "task"
//! role = "greeter"
//! next = "done"
//!
//! [[steps]]
//! id = "done"
//! kind = "end"
//! "#;
//! let def = parse("hello.toml", source, Format::Toml).expect("valid");
//! assert_eq!(def.steps.len(), 2);
//! ```

mod model;
mod validate;

pub use model::*;
pub use validate::{Catalog, Problem, valid_id, validate};

/// The source format of a definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Toml,
    Json,
}

impl Format {
    /// The format a file name implies: `.json` is JSON, anything else TOML.
    pub fn from_name(name: &str) -> Format {
        if name.ends_with(".json") {
            Format::Json
        } else {
            Format::Toml
        }
    }
}

/// Why a definition cannot be deployed.
#[derive(Debug, thiserror::Error)]
pub enum DefinitionError {
    /// It does not parse, or does not fit the schema.
    #[error("{file}: {message}")]
    Parse {
        /// The file (or upload) name.
        file: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// It parses but is not a valid workflow.
    #[error("{file}: {} problem(s): {}", problems.len(), render(file, problems))]
    Invalid {
        /// The file (or upload) name.
        file: String,
        /// Everything wrong with it.
        problems: Vec<Problem>,
    },
}

fn render(file: &str, problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| match p.line {
            Some(line) => format!("{file}:{line}: {}: {}", p.path, p.message),
            None => format!("{}: {}", p.path, p.message),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Parses a definition; `file` names it in errors.
pub fn parse(file: &str, source: &str, format: Format) -> Result<Definition, DefinitionError> {
    let parsed = match format {
        Format::Toml => toml::from_str::<Definition>(source).map_err(|e| e.to_string()),
        Format::Json => serde_json::from_str::<Definition>(source).map_err(|e| e.to_string()),
    };
    parsed.map_err(|message| DefinitionError::Parse {
        file: file.to_string(),
        message: message.trim().to_string(),
    })
}

/// Parses and validates; the definition is returned only if it may be deployed.
pub fn load(
    file: &str,
    source: &str,
    format: Format,
    catalog: &dyn Catalog,
) -> Result<Definition, DefinitionError> {
    let def = parse(file, source, format)?;
    let mut problems = validate(&def, catalog);
    if problems.is_empty() {
        return Ok(def);
    }
    for problem in &mut problems {
        problem.line = problem
            .step
            .and_then(|i| step_line(source, format, i, def.steps[i].id()));
    }
    Err(DefinitionError::Invalid {
        file: file.to_string(),
        problems,
    })
}

/// The line where step `index` (with `id`) starts in the source, 1-based.
fn step_line(source: &str, format: Format, index: usize, id: &str) -> Option<usize> {
    let mut lines = source.lines().enumerate();
    match format {
        Format::Toml => lines
            .filter(|(_, l)| l.trim() == "[[steps]]")
            .nth(index)
            .map(|(n, _)| n + 1),
        Format::Json => {
            let needle = format!("\"{id}\"");
            lines
                .find(|(_, l)| l.contains("\"id\"") && l.contains(&needle))
                .map(|(n, _)| n + 1)
        }
    }
}
