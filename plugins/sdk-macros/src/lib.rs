//! The `export!` macro of the Flowgate plugin SDK; use it through `flowgate_plugin_sdk::export!`.
//!
//! ```ignore
//! struct MyPolicy;
//! impl flowgate_plugin_sdk::ApprovalPolicy for MyPolicy { /* ... */ }
//! flowgate_plugin_sdk::export!(MyPolicy: approval_policy);
//! ```
//!
//! It expands `wit_bindgen::generate!` in the plugin crate for a world that exports exactly the
//! capabilities named, so that the component claims only what the plugin implements, and it wires
//! each capability's generated `Guest` trait to the SDK trait of the same name.

use proc_macro::TokenStream;
use quote::{format_ident, quote};
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Ident, Token, Type, parse_macro_input};

/// The WIT package this SDK release binds to, resolved when the macro crate is compiled.
const WIT_DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../wit/flowgate-plugin@0.1.0"
);
const PACKAGE_NS: &str = "flowgate:plugin";
const VERSION: &str = "0.1.0";

/// One capability a plugin can export.
struct Capability {
    /// The name authors write: `router`, `approval_policy`, `step_action`.
    name: &'static str,
    /// The WIT interface it exports.
    interface: &'static str,
    /// The SDK trait the plugin implements.
    sdk_trait: &'static str,
    /// The exported function, its request type and its response type.
    function: &'static str,
    request: &'static str,
    response: &'static str,
}

const CAPABILITIES: [Capability; 3] = [
    Capability {
        name: "router",
        interface: "router",
        sdk_trait: "Router",
        function: "route",
        request: "RouteRequest",
        response: "RouteDecision",
    },
    Capability {
        name: "approval_policy",
        interface: "approval-policy",
        sdk_trait: "ApprovalPolicy",
        function: "evaluate",
        request: "ApprovalRequest",
        response: "ApprovalDecision",
    },
    Capability {
        name: "step_action",
        interface: "step-action",
        sdk_trait: "StepAction",
        function: "run",
        request: "ActionRequest",
        response: "ActionOutput",
    },
];

struct ExportInput {
    ty: Type,
    capabilities: Vec<Ident>,
}

impl Parse for ExportInput {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let ty: Type = input.parse()?;
        input.parse::<Token![:]>()?;
        let list = Punctuated::<Ident, Token![,]>::parse_terminated(input)?;
        let capabilities: Vec<Ident> = list.into_iter().collect();
        if capabilities.is_empty() {
            return Err(
                input.error("name at least one capability: router, approval_policy, step_action")
            );
        }
        Ok(ExportInput { ty, capabilities })
    }
}

/// Exports a type as a Flowgate plugin: `export!(MyPlugin: router, approval_policy)`.
///
/// For each capability named, the type must implement the SDK trait of the same name
/// (`Router`, `ApprovalPolicy`, `StepAction`).
#[proc_macro]
pub fn export(input: TokenStream) -> TokenStream {
    let ExportInput { ty, capabilities } = parse_macro_input!(input as ExportInput);

    let mut chosen: Vec<&Capability> = Vec::new();
    for ident in &capabilities {
        let Some(cap) = CAPABILITIES.iter().find(|c| ident == c.name) else {
            let known: Vec<&str> = CAPABILITIES.iter().map(|c| c.name).collect();
            let message = format!(
                "unknown capability `{ident}`; expected one of: {}",
                known.join(", ")
            );
            return syn::Error::new(ident.span(), message)
                .to_compile_error()
                .into();
        };
        if chosen.iter().any(|c| c.name == cap.name) {
            return syn::Error::new(ident.span(), format!("`{ident}` is named twice"))
                .to_compile_error()
                .into();
        }
        chosen.push(cap);
    }

    let exports: String = chosen
        .iter()
        .map(|c| format!("  export {PACKAGE_NS}/{}@{VERSION};\n", c.interface))
        .collect();
    let world = format!(
        "package flowgate:guest;\nworld guest {{\n  import {PACKAGE_NS}/host@{VERSION};\n{exports}}}\n"
    );

    let impls = chosen.iter().map(|c| {
        let module = format_ident!("{}", c.name);
        let sdk_trait = format_ident!("{}", c.sdk_trait);
        let function = format_ident!("{}", c.function);
        let request = format_ident!("{}", c.request);
        let response = format_ident!("{}", c.response);
        quote! {
            impl __flowgate_bindings::exports::flowgate::plugin::#module::Guest for #ty {
                fn #function(
                    request: ::flowgate_plugin_sdk::#request,
                ) -> ::core::result::Result<
                    ::flowgate_plugin_sdk::#response,
                    ::flowgate_plugin_sdk::PluginError,
                > {
                    <#ty as ::flowgate_plugin_sdk::#sdk_trait>::#function(request)
                }
            }
        }
    });

    let types = format!("{PACKAGE_NS}/types@{VERSION}");
    let host = format!("{PACKAGE_NS}/host@{VERSION}");
    quote! {
        #[doc(hidden)]
        #[allow(clippy::all, unused_qualifications, unsafe_code, missing_docs)]
        mod __flowgate_bindings {
            ::flowgate_plugin_sdk::__private::wit_bindgen::generate!({
                path: #WIT_DIR,
                inline: #world,
                world: "flowgate:guest/guest",
                runtime_path: "::flowgate_plugin_sdk::__private::wit_bindgen::rt",
                with: {
                    #types: ::flowgate_plugin_sdk::wit::types,
                    #host: ::flowgate_plugin_sdk::wit::host,
                },
            });
        }
        // The generated exports are `unsafe extern "C"` shims; the plugin's own code stays under
        // whatever lints its crate sets.
        #[allow(unsafe_code)]
        const _: () = {
            #(#impls)*
            // Export symbols only exist in the component; natively the impls above still
            // type-check, and native tests call the SDK traits directly.
            #[cfg(target_arch = "wasm32")]
            __flowgate_bindings::export!(#ty with_types_in __flowgate_bindings);
        };
    }
    .into()
}
