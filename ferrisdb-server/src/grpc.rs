//! What every FerrisDB process serves besides its own role: `grpc.health.v1` and gRPC
//! reflection (both `v1` and `v1alpha`, since common grpcurl builds only speak `v1alpha`).

use tonic::service::RoutesBuilder;

/// Adds reflection (v1 and v1alpha) over FerrisDB's and health's descriptor sets to `routes`.
pub fn add_reflection(routes: &mut RoutesBuilder) -> Result<(), tonic_reflection::server::Error> {
    let v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(ferrisdb_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(ferrisdb_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    routes.add_service(v1);
    routes.add_service(v1alpha);
    Ok(())
}
