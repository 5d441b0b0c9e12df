/**
 * transport/raft.proto as a protobufjs JSON descriptor, embedded so that the gRPC transport
 * works without reading files at run time (standalone `deno compile` binaries). raft.proto is
 * the source of truth: grpc_test.ts checks that this descriptor describes the same service.
 * Regenerate with protobufjs: `Root.loadSync("transport/raft.proto").toJSON()`.
 *
 * @module
 */

/** The descriptor of package gokv.raft.v1 (service Raft and its messages). */
export const RAFT_PROTO_JSON: Record<string, unknown> = {
  "nested": {
    "gokv": {
      "nested": {
        "raft": {
          "nested": {
            "v1": {
              "nested": {
                "Raft": {
                  "methods": {
                    "Send": {
                      "requestType": "Batch",
                      "responseType": "Ack",
                    },
                    "SendSnapshot": {
                      "requestType": "Message",
                      "requestStream": true,
                      "responseType": "Ack",
                    },
                  },
                },
                "Batch": {
                  "fields": {
                    "messages": {
                      "rule": "repeated",
                      "type": "Message",
                      "id": 1,
                    },
                  },
                },
                "Ack": {
                  "fields": {},
                },
                "Entry": {
                  "fields": {
                    "term": {
                      "type": "uint64",
                      "id": 1,
                    },
                    "index": {
                      "type": "uint64",
                      "id": 2,
                    },
                    "type": {
                      "type": "uint32",
                      "id": 3,
                    },
                    "data": {
                      "type": "bytes",
                      "id": 4,
                    },
                  },
                },
                "ConfState": {
                  "fields": {
                    "voters": {
                      "rule": "repeated",
                      "type": "uint64",
                      "id": 1,
                    },
                    "votersOutgoing": {
                      "rule": "repeated",
                      "type": "uint64",
                      "id": 2,
                    },
                    "learners": {
                      "rule": "repeated",
                      "type": "uint64",
                      "id": 3,
                    },
                    "learnersNext": {
                      "rule": "repeated",
                      "type": "uint64",
                      "id": 4,
                    },
                  },
                },
                "MemberContext": {
                  "fields": {
                    "id": {
                      "type": "uint64",
                      "id": 1,
                    },
                    "context": {
                      "type": "bytes",
                      "id": 2,
                    },
                  },
                },
                "SnapshotMeta": {
                  "fields": {
                    "index": {
                      "type": "uint64",
                      "id": 1,
                    },
                    "term": {
                      "type": "uint64",
                      "id": 2,
                    },
                    "conf": {
                      "type": "ConfState",
                      "id": 3,
                    },
                    "memberContexts": {
                      "rule": "repeated",
                      "type": "MemberContext",
                      "id": 4,
                    },
                  },
                },
                "SnapshotChunk": {
                  "fields": {
                    "meta": {
                      "type": "SnapshotMeta",
                      "id": 1,
                    },
                    "offset": {
                      "type": "uint64",
                      "id": 2,
                    },
                    "total": {
                      "type": "uint64",
                      "id": 3,
                    },
                    "data": {
                      "type": "bytes",
                      "id": 4,
                    },
                    "done": {
                      "type": "bool",
                      "id": 5,
                    },
                  },
                },
                "Message": {
                  "fields": {
                    "type": {
                      "type": "uint32",
                      "id": 1,
                    },
                    "to": {
                      "type": "uint64",
                      "id": 2,
                    },
                    "from": {
                      "type": "uint64",
                      "id": 3,
                    },
                    "term": {
                      "type": "uint64",
                      "id": 4,
                    },
                    "logTerm": {
                      "type": "uint64",
                      "id": 5,
                    },
                    "index": {
                      "type": "uint64",
                      "id": 6,
                    },
                    "entries": {
                      "rule": "repeated",
                      "type": "Entry",
                      "id": 7,
                    },
                    "commit": {
                      "type": "uint64",
                      "id": 8,
                    },
                    "reject": {
                      "type": "bool",
                      "id": 9,
                    },
                    "rejectHint": {
                      "type": "uint64",
                      "id": 10,
                    },
                    "context": {
                      "type": "bytes",
                      "id": 11,
                    },
                    "snapshot": {
                      "type": "SnapshotChunk",
                      "id": 12,
                    },
                  },
                },
              },
            },
          },
        },
      },
    },
  },
};
