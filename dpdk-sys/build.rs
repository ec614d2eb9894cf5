//! Generates the DPDK bindings at build time.
//!
//! 1. `pkg-config` finds Debian's DPDK 22.11 (`libdpdk-dev`), checks the version and emits the
//!    dynamic link flags. PMDs are not linked: EAL dlopens them from its plugin directory.
//! 2. The flag macros that bindgen cannot evaluate (`RTE_ETH_RSS_*`, `RTE_ETH_{RX,TX}_OFFLOAD_*`
//!    use the function-like `RTE_BIT64()`) are listed from DPDK's headers and re-exported as
//!    enumerators of a `uint64_t` enum (`OUT_DIR/dpdk_sys_consts.h`; wrapper.h says why not
//!    `static const`). `RTE_MBUF_F_*` get the same treatment so every offload flag is a `u64`.
//! 3. bindgen turns `wrapper.h` into `OUT_DIR/bindings.rs`; `wrap_static_fns` writes
//!    `OUT_DIR/extern.c`, one exported wrapper per `static inline` function.
//! 4. `cc` compiles `extern.c` with DPDK's own cflags (`-include rte_config.h -march=corei7`),
//!    never `-march=native`, so inline code paths match Debian's build of the libraries.

use std::collections::BTreeSet;
use std::env;
use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::Command;

use bindgen::callbacks::{EnumVariantValue, MacroParsingBehavior, ParseCallbacks};

const INSTALL_HINT: &str = "apt-get install libdpdk-dev pkg-config libclang-dev";

/// DPDK 22.11 is ABI 23; its PMDs live in `.../dpdk/pmds-23.0`, and 23.x would break the ABI.
const DPDK_VERSIONS: std::ops::Range<&str> = "22.11".."23";

/// Macro prefixes re-exported as `u64` constants, and the headers that define them.
const FLAG_PREFIXES: &[&str] = &[
    "RTE_ETH_RSS_",
    "RTE_ETH_RX_OFFLOAD_",
    "RTE_ETH_TX_OFFLOAD_",
    "RTE_MBUF_F_",
];
const FLAG_HEADERS: &[&str] = &["rte_ethdev.h", "rte_mbuf_core.h"];
/// Sizes, not flags: plain integers that bindgen emits by itself.
const FLAG_EXCLUDED_PREFIX: &str = "RTE_ETH_RSS_RETA_SIZE_";
/// C name of a re-exported constant; the Rust name drops this prefix again.
const CONST_PREFIX: &str = "DPDK_SYS_";
/// The enum holding them, as bindgen names it (`pub type dpdk_sys_flag = u64` in Rust).
const FLAG_ENUM_C: &str = "enum dpdk_sys_flag";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=wrapper.h");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG");
    println!("cargo:rerun-if-env-changed=LIBCLANG_PATH");

    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let wrapper = manifest_dir.join("wrapper.h");

    let dpdk = pkg_config::Config::new()
        .range_version(DPDK_VERSIONS)
        .probe("libdpdk")
        .unwrap_or_else(|e| panic!("libdpdk-dev not found: {INSTALL_HINT}\n{e}"));
    // rte_eth_from_rings() lives in the ring PMD, which Debian's libdpdk.pc does not list. With
    // the default --as-needed it is only recorded in binaries that call it; being the same file
    // as the plugin EAL dlopens, it registers once.
    println!("cargo:rustc-link-lib=dylib=rte_net_ring");
    let cflags = dpdk_cflags();

    let flags = flag_macros(&dpdk.include_paths);
    write_consts_header(&out_dir.join("dpdk_sys_consts.h"), &flags);

    let builder = bindgen::Builder::default()
        .header(wrapper.to_str().expect("UTF-8 path"))
        .clang_args(&cflags)
        .clang_arg(format!("-I{}", out_dir.display()))
        .clang_arg("-DDPDK_SYS_BINDGEN")
        .allowlist_function("(rte|dpdk_sys)_.*")
        .allowlist_type("(rte|dpdk_sys)_.*")
        // Plus the few object-like macros DPDK names without the RTE_ prefix.
        .allowlist_var("(RTE|rte|DPDK_SYS|RING_F)_.*|SOCKET_ID_ANY|LCORE_ID_ANY")
        // E0588: Rust rejects a packed struct holding an aligned one, which C allows. The ARP
        // structs are `__rte_packed __rte_aligned(2)` around `rte_ether_addr` (aligned(2)), so
        // they stay size- and alignment-exact blobs; the stack parses ARP itself (smoltcp).
        .opaque_type("rte_l2tpv2_combined_msg_hdr")
        .opaque_type("rte_arp_ipv4")
        .opaque_type("rte_arp_hdr")
        // Its Debug derive does not compile.
        .opaque_type("rte_gtp_psc_generic_hdr")
        .wrap_static_fns(true)
        .wrap_static_fns_path(out_dir.join("extern"))
        .derive_default(true)
        .layout_tests(true)
        // DPDK's Doxygen text is not rustdoc: its indented lines would become doctests.
        .generate_comments(false)
        .prepend_enum_name(false)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .parse_callbacks(Box::new(FlagConsts { names: flags }));
    // Without libclang, bindgen panics inside generate() rather than returning an error.
    let bindings = panic::catch_unwind(AssertUnwindSafe(|| builder.generate()))
        .unwrap_or_else(|_| panic!("bindgen could not run (libclang missing?): {INSTALL_HINT}"))
        .unwrap_or_else(|e| panic!("bindgen failed on wrapper.h: {e}"));
    bindings
        .write_to_file(out_dir.join("bindings.rs"))
        .expect("write bindings.rs");

    let mut cc = cc::Build::new();
    cc.file(out_dir.join("extern.c")).include(&manifest_dir);
    for flag in &cflags {
        cc.flag(flag);
    }
    // The wrappers include DPDK's headers verbatim; their warnings are not ours to fix.
    cc.warnings(false).compile("dpdk_sys_extern");
}

/// `pkg-config --cflags libdpdk`, verbatim: the pkg-config crate keeps only -I and -D, but the
/// bindings and the wrappers also need `-include rte_config.h` and Debian's `-march`.
fn dpdk_cflags() -> Vec<String> {
    let pkg_config = env::var("PKG_CONFIG").unwrap_or_else(|_| "pkg-config".to_owned());
    let out = Command::new(&pkg_config)
        .args(["--cflags", "libdpdk"])
        .output()
        .unwrap_or_else(|e| panic!("libdpdk-dev not found: {INSTALL_HINT}\n{pkg_config}: {e}"));
    assert!(
        out.status.success(),
        "libdpdk-dev not found: {INSTALL_HINT}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("UTF-8 cflags")
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// Names of the object-like `#define`s with a `FLAG_PREFIXES` prefix in `FLAG_HEADERS`.
fn flag_macros(include_paths: &[PathBuf]) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for header in FLAG_HEADERS {
        let path = include_paths
            .iter()
            .map(|dir| dir.join(header))
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("{header} not in {include_paths:?}: {INSTALL_HINT}"));
        println!("cargo:rerun-if-changed={}", path.display());
        let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for line in text.lines() {
            let Some(rest) = line.trim_start().strip_prefix('#') else {
                continue;
            };
            let Some(rest) = rest.trim_start().strip_prefix("define") else {
                continue;
            };
            let rest = rest.trim_start();
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            let (name, after) = rest.split_at(end);
            let function_like = after.starts_with('(');
            if !function_like
                && FLAG_PREFIXES.iter().any(|p| name.starts_with(p))
                && !name.starts_with(FLAG_EXCLUDED_PREFIX)
            {
                names.insert(name.to_owned());
            }
        }
    }
    assert!(
        !names.is_empty(),
        "no RTE_ETH_RSS_* macros found: is this DPDK 22.11?"
    );
    names
}

fn write_consts_header(path: &Path, names: &BTreeSet<String>) {
    let mut text = String::from("/* Generated by dpdk-sys/build.rs; see wrapper.h. */\n");
    text.push_str(&format!("{FLAG_ENUM_C} : uint64_t {{\n"));
    for name in names {
        text.push_str(&format!("\t{CONST_PREFIX}{name} = {name},\n"));
    }
    text.push_str("};\n");
    // Rewriting an unchanged file would make it newer than this run, and bindgen's
    // rerun-if-changed on every included header would then rerun the build script every time.
    if fs::read_to_string(path).ok().as_deref() != Some(text.as_str()) {
        fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

/// Hides the original flag macros from bindgen and gives their `u64` re-exports the macro's name.
#[derive(Debug)]
struct FlagConsts {
    names: BTreeSet<String>,
}

impl ParseCallbacks for FlagConsts {
    fn will_parse_macro(&self, name: &str) -> MacroParsingBehavior {
        if self.names.contains(name) {
            MacroParsingBehavior::Ignore
        } else {
            MacroParsingBehavior::Default
        }
    }

    fn enum_variant_name(
        &self,
        enum_name: Option<&str>,
        name: &str,
        _value: EnumVariantValue,
    ) -> Option<String> {
        if enum_name != Some(FLAG_ENUM_C) {
            return None;
        }
        name.strip_prefix(CONST_PREFIX)
            .filter(|name| self.names.contains(*name))
            .map(str::to_owned)
    }
}
