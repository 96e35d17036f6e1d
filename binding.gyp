# node-gyp entry point. The real build graph is CMakeLists.txt (cmake-js); this file only delegates to
# it, so `node-gyp rebuild` and `npm install` produce the same addons in build/Release.
{
  "targets": [
    {
      "target_name": "mmesid_cmake",
      "type": "none",
      "actions": [
        {
          "action_name": "cmake_js_build",
          "inputs": ["CMakeLists.txt"],
          "outputs": ["build/Release/mmesid_core.node"],
          "action": ["node", "scripts/build-native.js"]
        }
      ]
    }
  ]
}
