//! Prints the resolved PrusaSlicer config of a preset triple from the installed vendor
//! bundles, as the `.ini` `prusa-slicer --load` reads: `cargo run -p fabrouter-profiles
//! --example resolve -- PRINTER PRINT FILAMENT > resolved.ini`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [printer, print, filament] = args.as_slice() else {
        return Err("usage: resolve PRINTER PRINT FILAMENT".into());
    };
    let lib = fabrouter_profiles::Library::installed()?;
    let c = lib.resolve_triple(&fabrouter_profiles::Triple {
        printer: printer.clone(),
        print: print.clone(),
        filament: filament.clone(),
    })?;
    print!("{}", c.to_ini());
    Ok(())
}
