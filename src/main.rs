//! `pen`: see the library crate for the modules; `server` runs the process.

fn main() {
    let mut args = Vec::new();
    for a in std::env::args_os().skip(1) {
        match a.into_string() {
            Ok(s) => args.push(s),
            Err(bad) => {
                eprintln!("pen: argument {bad:?} is not valid UTF-8");
                std::process::exit(1);
            }
        }
    }
    std::process::exit(pen::process::main(&args));
}
