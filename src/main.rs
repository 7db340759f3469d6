fn main() {
    eprintln!("backup-operator: the controller is not implemented yet (issue 4)");
    std::process::exit(2);
}
