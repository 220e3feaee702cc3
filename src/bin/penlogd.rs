//! The `penlogd` companion program; see `pen::companions::penlogd`.

fn main() {
    let args = std::env::args_os().skip(1).collect();
    std::process::exit(pen::companions::penlogd::run(args));
}
