//! The `penlog` companion program; see `pen::companions::penlog`.

fn main() {
    let args = std::env::args_os().skip(1).collect();
    std::process::exit(pen::companions::penlog::run(args));
}
