fn main() -> std::process::ExitCode {
    yallmp::cli::main()
}
