//! fabd compiles the web app's built files in (`web.rs`, through `include_dir!`), which cargo
//! does not track on stable Rust: this makes a changed `web/dist/` rebuild fabd.

fn main() {
    println!("cargo::rerun-if-changed=../../web/dist");
}
