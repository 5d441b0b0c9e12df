/**
 * client/kv_connect.proto as a protobufjs JSON descriptor, embedded so that the KV Connect
 * codec needs no file at run time (standalone `deno compile` binaries). kv_connect.proto is the
 * source of truth: kv_connect_proto_test.ts checks that this descriptor is the one protobufjs
 * builds from it. Regenerate with protobufjs:
 * `protobuf.loadSync("client/kv_connect.proto").toJSON()`.
 *
 * @module
 */

/** The descriptor of package gokv.kvconnect.v1 (the KV Connect data path messages). */
export const KV_CONNECT_PROTO_JSON: Record<string, unknown> = {
  "nested": {
    "gokv": {
      "nested": {
        "kvconnect": {
          "nested": {
            "v1": {
              "nested": {
                "SnapshotRead": {
                  "fields": {
                    "ranges": {
                      "rule": "repeated",
                      "type": "ReadRange",
                      "id": 1,
                    },
                  },
                },
                "SnapshotReadOutput": {
                  "fields": {
                    "ranges": {
                      "rule": "repeated",
                      "type": "ReadRangeOutput",
                      "id": 1,
                    },
                    "readDisabled": {
                      "type": "bool",
                      "id": 2,
                    },
                    "readIsStronglyConsistent": {
                      "type": "bool",
                      "id": 4,
                    },
                    "status": {
                      "type": "SnapshotReadStatus",
                      "id": 8,
                    },
                  },
                },
                "SnapshotReadStatus": {
                  "values": {
                    "SR_UNSPECIFIED": 0,
                    "SR_SUCCESS": 1,
                    "SR_READ_DISABLED": 2,
                  },
                },
                "ReadRange": {
                  "fields": {
                    "start": {
                      "type": "bytes",
                      "id": 1,
                    },
                    "end": {
                      "type": "bytes",
                      "id": 2,
                    },
                    "limit": {
                      "type": "int32",
                      "id": 3,
                    },
                    "reverse": {
                      "type": "bool",
                      "id": 4,
                    },
                  },
                },
                "ReadRangeOutput": {
                  "fields": {
                    "values": {
                      "rule": "repeated",
                      "type": "KvEntry",
                      "id": 1,
                    },
                  },
                },
                "AtomicWrite": {
                  "fields": {
                    "checks": {
                      "rule": "repeated",
                      "type": "Check",
                      "id": 1,
                    },
                    "mutations": {
                      "rule": "repeated",
                      "type": "Mutation",
                      "id": 2,
                    },
                    "enqueues": {
                      "rule": "repeated",
                      "type": "Enqueue",
                      "id": 3,
                    },
                  },
                },
                "AtomicWriteOutput": {
                  "fields": {
                    "status": {
                      "type": "AtomicWriteStatus",
                      "id": 1,
                    },
                    "versionstamp": {
                      "type": "bytes",
                      "id": 2,
                    },
                    "failedChecks": {
                      "rule": "repeated",
                      "type": "uint32",
                      "id": 4,
                    },
                  },
                },
                "Check": {
                  "fields": {
                    "key": {
                      "type": "bytes",
                      "id": 1,
                    },
                    "versionstamp": {
                      "type": "bytes",
                      "id": 2,
                    },
                  },
                },
                "Mutation": {
                  "fields": {
                    "key": {
                      "type": "bytes",
                      "id": 1,
                    },
                    "value": {
                      "type": "KvValue",
                      "id": 2,
                    },
                    "mutationType": {
                      "type": "MutationType",
                      "id": 3,
                    },
                    "expireAtMs": {
                      "type": "int64",
                      "id": 4,
                    },
                    "sumMin": {
                      "type": "bytes",
                      "id": 5,
                    },
                    "sumMax": {
                      "type": "bytes",
                      "id": 6,
                    },
                    "sumClamp": {
                      "type": "bool",
                      "id": 7,
                    },
                  },
                },
                "KvValue": {
                  "fields": {
                    "data": {
                      "type": "bytes",
                      "id": 1,
                    },
                    "encoding": {
                      "type": "ValueEncoding",
                      "id": 2,
                    },
                  },
                },
                "KvEntry": {
                  "fields": {
                    "key": {
                      "type": "bytes",
                      "id": 1,
                    },
                    "value": {
                      "type": "bytes",
                      "id": 2,
                    },
                    "encoding": {
                      "type": "ValueEncoding",
                      "id": 3,
                    },
                    "versionstamp": {
                      "type": "bytes",
                      "id": 4,
                    },
                  },
                },
                "MutationType": {
                  "values": {
                    "M_UNSPECIFIED": 0,
                    "M_SET": 1,
                    "M_DELETE": 2,
                    "M_SUM": 3,
                    "M_MAX": 4,
                    "M_MIN": 5,
                    "M_SET_SUFFIX_VERSIONSTAMPED_KEY": 9,
                  },
                },
                "ValueEncoding": {
                  "values": {
                    "VE_UNSPECIFIED": 0,
                    "VE_V8": 1,
                    "VE_LE64": 2,
                    "VE_BYTES": 3,
                  },
                },
                "AtomicWriteStatus": {
                  "values": {
                    "AW_UNSPECIFIED": 0,
                    "AW_SUCCESS": 1,
                    "AW_CHECK_FAILURE": 2,
                    "AW_WRITE_DISABLED": 5,
                  },
                },
                "Enqueue": {
                  "fields": {
                    "payload": {
                      "type": "bytes",
                      "id": 1,
                    },
                    "deadlineMs": {
                      "type": "int64",
                      "id": 2,
                    },
                    "keysIfUndelivered": {
                      "rule": "repeated",
                      "type": "bytes",
                      "id": 3,
                    },
                    "backoffSchedule": {
                      "rule": "repeated",
                      "type": "uint32",
                      "id": 4,
                    },
                  },
                },
                "Watch": {
                  "fields": {
                    "keys": {
                      "rule": "repeated",
                      "type": "WatchKey",
                      "id": 1,
                    },
                  },
                },
                "WatchOutput": {
                  "fields": {
                    "status": {
                      "type": "SnapshotReadStatus",
                      "id": 1,
                    },
                    "keys": {
                      "rule": "repeated",
                      "type": "WatchKeyOutput",
                      "id": 2,
                    },
                  },
                },
                "WatchKey": {
                  "fields": {
                    "key": {
                      "type": "bytes",
                      "id": 1,
                    },
                  },
                },
                "WatchKeyOutput": {
                  "fields": {
                    "changed": {
                      "type": "bool",
                      "id": 1,
                    },
                    "entryIfChanged": {
                      "type": "KvEntry",
                      "id": 2,
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
