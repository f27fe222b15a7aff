"""Offline stand-in for @rules_proto: forwards each macro to the native rule of the same name."""

ProtoInfo = ProtoInfo

def proto_library(**kwargs):
    native.proto_library(**kwargs)

def proto_lang_toolchain(**kwargs):
    native.proto_lang_toolchain(**kwargs)
