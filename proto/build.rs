//! Compiles `ferrisdb/v1/*.proto` with protox (pure Rust, no system `protoc`) and writes the
//! encoded file descriptor set for gRPC reflection.
//!
//! Two passes: the messages and the server halves of the services (with
//! `crate::codec::RequestCodec`, which reports undecodable requests as `INVALID_ARGUMENT`),
//! then the client halves alone (with tonic's prost codec) into `client/`, referring to the
//! messages of the first pass.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(proto_dir.join("ferrisdb/v1"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "proto"))
        .collect();
    files.sort();
    println!("cargo:rerun-if-changed=ferrisdb/v1");

    let mut compiler = protox::Compiler::new([&proto_dir])?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(&files)?;
    for file in compiler.files() {
        if let Some(path) = file.path() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("ferrisdb_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;
    // Maps as BTreeMap: encoded in key order, so a message is the same bytes every time (a
    // HashMap's order changes from process to process).
    tonic_prost_build::configure()
        .bytes(".")
        .btree_map(".")
        .build_client(false)
        .codec_path("crate::codec::RequestCodec")
        .compile_fds(compiler.file_descriptor_set())?;
    let client_dir = out_dir.join("client");
    std::fs::create_dir_all(&client_dir)?;
    tonic_prost_build::configure()
        .bytes(".")
        .build_server(false)
        .extern_path(".ferrisdb.v1", "crate::v1")
        .out_dir(&client_dir)
        .compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}
