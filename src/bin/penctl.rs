//! The `penctl` program; see `pen::companions::penctl`.

fn main() {
    let args = std::env::args_os().skip(1).collect();
    std::process::exit(pen::companions::penctl::run(args));
}
