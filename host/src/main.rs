fn main() {
    println!("relocate: under construction");
}
