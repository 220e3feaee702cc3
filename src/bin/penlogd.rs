//! The `penlogd` program. All five binaries are the same multi-call program
//! (`pen::multicall`), which chooses by the name it is called as; `make`
//! builds and installs only `pen`, with links for the others.

fn main() {
    pen::multicall::main()
}
