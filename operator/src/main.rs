fn main() {
    print!("{}", adgang::resources::crds_yaml());
}
