{
  "targets": [
    {
      "target_name": "tapbox_native",
      "sources": ["<!@(ls -1 native/addon/*.cc)"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS"],
      "cflags": ["-O3", "-Wall"],
      "cflags_cc": ["-O3", "-Wall", "-std=c++17"]
    },
    {
      "target_name": "tapbox-launcher",
      "type": "executable",
      "sources": ["<!@(ls -1 native/launcher/*.c)"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-std=gnu11", "-D_GNU_SOURCE", "-fstack-protector-strong", "-D_FORTIFY_SOURCE=2"],
      "ldflags": ["-Wl,-z,relro,-z,now"]
    }
  ]
}
