//! The `mergelogs` companion program; see `pen::companions::mergelogs`.

fn main() {
    let args = std::env::args_os().skip(1).collect();
    std::process::exit(pen::companions::mergelogs::run(args));
}
