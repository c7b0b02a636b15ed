-- POST of a 64 KiB body to the echo app (the server reads it all and sends it back).
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "report.lua")

wrk.method = "POST"
wrk.body = string.rep("a", 64 * 1024)
wrk.headers["Content-Type"] = "application/octet-stream"
