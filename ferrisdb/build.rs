//! Compiles the etcd API subset under `../proto/etcd` (client stubs only) with protox, so
//! `ferrisdb bench --store etcd` can talk to an etcd member without a system `protoc` or the
//! `etcd-client` crate. The generated code is private to the benchmark and is not part of
//! FerrisDB's own protocol or its reflection descriptor.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../proto/etcd");
    println!("cargo:rerun-if-changed={}", root.display());
    let files = [
        root.join("etcdserverpb/rpc.proto"),
        root.join("mvccpb/kv.proto"),
    ];
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    let mut compiler = protox::Compiler::new([&root])?;
    compiler.include_imports(true);
    compiler.open_files(&files)?;
    tonic_prost_build::configure()
        .build_server(false)
        .bytes(".")
        .compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}
