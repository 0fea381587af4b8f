# The example API `plumb provision --example` deploys, as plumber's do_provision(example = TRUE) did.

#* A page that says the API is up
#* @get /
#* @serializer html
function() {
  "<html><body><h1>plumber is alive!</h1><p>Served by R behind nginx, deployed by plumb.</p></body></html>"
}

#* Echo back the input
#* @param msg The message to echo
#* @get /echo
function(msg = "") {
  list(msg = paste0("The message is: '", msg, "'"))
}
