{
  "targets": [
    {
      "target_name": "blackmatch_fuse3",
      "sources": ["src/session.cc"],
      "include_dirs": ["<!@(node -p \"require('node-addon-api').include\")"],
      "cflags": ["<!@(pkg-config --cflags-only-I fuse3)"],
      "libraries": ["<!@(pkg-config --libs fuse3)", "-Wl,-rpath,<!@(pkg-config --variable=libdir fuse3)"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS", "FUSE_USE_VERSION=314"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-Wno-missing-field-initializers", "-Wno-unused-parameter"],
      "cflags_cc!": ["-fno-exceptions"]
    }
  ]
}
