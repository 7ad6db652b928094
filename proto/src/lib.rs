//! FerrisDB's gRPC protocol: the generated `ferrisdb.v1` messages and services, the encoded
//! file descriptor set that every process registers for gRPC reflection, the conversions
//! between wire messages and `ferrisdb-core` types ([`convert`]) and the mapping between
//! [`ferrisdb_core::Error`] and gRPC statuses ([`status`]), and the seam every channel and
//! listener goes through ([`transport`]: TCP, or the simulator's network).
//!
//! Services: `KV` (public, `kv.proto`), `ClusterController` (`controller.proto`),
//! `TransactionCoordinator` (`coordinator.proto`) and `StorageServer` (`storage.proto`);
//! shared messages live in `types.proto`.

#![deny(missing_docs)]

pub mod codec;
pub mod convert;
#[doc(hidden)]
pub mod fuzzing;
pub mod status;
pub mod transport;

/// Generated code for the `ferrisdb.v1` package.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("ferrisdb.v1");
    include!(concat!(env!("OUT_DIR"), "/client/ferrisdb.v1.rs"));
}

/// The encoded `FileDescriptorSet` of every FerrisDB proto file, for reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/ferrisdb_descriptor.bin"));

#[cfg(test)]
mod tests {
    use prost::Message;

    #[test]
    fn descriptor_set_decodes_and_names_the_kv_service() {
        let set = prost_types_free::decode(super::FILE_DESCRIPTOR_SET);
        for file in ["kv", "types", "controller", "coordinator", "storage"] {
            let name = format!("ferrisdb/v1/{file}.proto");
            assert!(set.contains(&name), "{set:?}");
        }
    }

    /// Decodes file names from a FileDescriptorSet without pulling in prost-types.
    mod prost_types_free {
        use prost::Message;

        #[derive(Clone, PartialEq, Message)]
        struct FileDescriptorSet {
            #[prost(message, repeated, tag = "1")]
            file: Vec<FileDescriptorProto>,
        }
        #[derive(Clone, PartialEq, Message)]
        struct FileDescriptorProto {
            #[prost(string, optional, tag = "1")]
            name: Option<String>,
        }

        pub fn decode(bytes: &[u8]) -> Vec<String> {
            FileDescriptorSet::decode(bytes)
                .expect("descriptor set decodes")
                .file
                .into_iter()
                .filter_map(|f| f.name)
                .collect()
        }
    }

    #[test]
    fn kv_messages_round_trip() {
        let req = super::v1::PutRequest {
            key: "k".into(),
            value: vec![0u8, 255].into(),
        };
        let back = super::v1::PutRequest::decode(req.encode_to_vec().as_slice()).unwrap();
        assert_eq!(back, req);
    }
}
