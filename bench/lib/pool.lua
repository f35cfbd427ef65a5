-- A returning visitor: each request takes the next session of a pool, round robin.
--   wrk ... -s pool.lua URL -- POOLFILE POOLNAME            (GET with the pool's cookies)
--   wrk ... -s pool.lua URL -- POOLFILE POOLNAME post BODY  (form POST; "{token}" in BODY
--                                                            becomes that session's CSRF token)
-- POOLFILE lines (tab-separated): POOLNAME <TAB> Cookie header value <TAB> CSRF token or "-".
-- A token is only valid together with the session it was minted for, so cookie and token
-- always travel as a pair. The token goes into BODY as it is in the file (already form-encoded
-- where it needs to be: the axum peer's tokens carry "%2F" and "%2B").
dofile(os.getenv("BENCH_LIB") .. "/common.lua")

local cookies, bodies, i, method = {}, {}, 0, "GET"

function init(args)
  local poolfile, pool = args[1], args[2]
  local body = nil
  if args[3] == "post" then
    method, body = "POST", args[4]
  end
  for line in io.lines(poolfile) do
    local name, cookie, token = line:match("^([^\t]+)\t([^\t]+)\t([^\t]+)$")
    if name == pool then
      table.insert(cookies, cookie)
      if body then
        assert(token ~= "-", "pool " .. pool .. " has no CSRF tokens")
        -- A function as the replacement: a string replacement would read "%" in the token as
        -- a capture reference ("%2" is an error, "%%" a single "%").
        table.insert(bodies, (body:gsub("{token}", function() return token end)))
      end
    end
  end
  assert(#cookies > 0, "no sessions in pool " .. pool .. " of " .. poolfile)
end

function request()
  i = i % #cookies + 1
  if method == "POST" then
    return wrk.format("POST", nil, {
      ["Cookie"] = cookies[i],
      ["Content-Type"] = "application/x-www-form-urlencoded",
    }, bodies[i])
  end
  return wrk.format(nil, nil, { ["Cookie"] = cookies[i] })
end
