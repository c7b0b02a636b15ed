-- GET of the URL given to wrk (plaintext, json, stream scenarios).
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "report.lua")
